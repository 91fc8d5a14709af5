// Persistent multi-threaded CPU kernels for the LSTM, the GRU (reset_after), minGRU and minLSTM,
// called from JAX through the XLA FFI (seqjax/kernels/native_build.py builds and registers them,
// seqjax/kernels/native.py wraps them in custom VJPs).
//
// Needs: an x86-64 CPU with AVX2 (8-float vectors; AVX-512F's 16-float vectors where the CPU has
// them: -march=native decides at build time), GCC or Clang (vector extensions), Linux, and the
// XLA FFI headers of the installed jaxlib. Elsewhere the build fails, native.available() is
// False and backend="auto" falls back to fused (sequential for minGRU/minLSTM); tests/
// test_kernels_native.py checks that fallback with no compiler at all.
//
// One call runs a whole sequence. Thread j owns the hidden units of its panels (VL units each) for
// every gate, so it computes those units' gates, carry and outputs from start to end: its columns
// of W_h (and W_x) are packed once per call and stay in its core's cache, the gate math runs on
// the matmul's accumulators, and one spin barrier per step publishes the new hidden state. This is
// the persistent-RNN scheme of seqjax/kernels/pallas.py on CPU cores instead of GPU programs.
//
// forward   z_t = x_t W_x + h_{t-1} W_h + b, gates, carry; saves the post-activation gates and
//           the carry entering each step (what the fused backend saves; the GRU also h W_hn).
// backward  per step: the gate gradients of own units (written to dZ_t, over the saved gates),
//           barrier, then dh_{t-1}[:, own] = dZ_t W_h[own, :]^T. The weight and input
//           gradients are big matmuls over all steps, done by XLA afterwards (native.py).
// minGRU and minLSTM (below) have no recurrent matmul: their backward computes dX and dW_x too.
// Semantics are those of seqjax.kernels.scan.masked_scan (masks, resets, reverse). The cells'
// math is in LstmCell, GruCell, min_forward_tile and min_row_gradients; seqjax/cells.py lists
// every other place that has it.
//
// Why each choice, with its measurement: experiments/results/bench/README.md.

#if !defined(__x86_64__)
#error "native.cc needs an x86-64 CPU with AVX2; backend='auto' falls back to fused without it"
#endif

#include <immintrin.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

#if defined(__AVX512F__)
constexpr int VL = 16;
#else
constexpr int VL = 8;
#endif
constexpr int MR = VL == 16 ? 6 : 3;  // batch rows per register tile (AVX2 has 16 registers)
constexpr int MAX_NG = 4;

typedef float vf __attribute__((vector_size(VL * 4)));
typedef int32_t vi __attribute__((vector_size(VL * 4)));
typedef float vfu __attribute__((vector_size(VL * 4), aligned(4)));

// s - 0 is s for every float, so this folds to one broadcast (s + 0 would not: -0 + 0 = +0).
inline vf splat(float s) { return s - vf{}; }
inline vf load(const float* p) { return *reinterpret_cast<const vfu*>(p); }
inline void store(float* p, vf v) { *reinterpret_cast<vfu*>(p) = v; }
inline vf loadn(const float* p, int n) {
  if (n == VL) return load(p);
  vf v = vf{};
  std::memcpy(&v, p, sizeof(float) * n);
  return v;
}
inline void storen(float* p, vf v, int n) {
  if (n == VL) return store(p, v);
  std::memcpy(p, &v, sizeof(float) * n);
}
// A store that bypasses the caches, for outputs that are not read again soon: it skips reading
// the line in first. p must be aligned to a vector; call _mm_sfence() before the data is shared.
inline void stream(float* p, vf v) {
#if defined(__AVX512F__)
  _mm512_stream_ps(p, reinterpret_cast<__m512>(v));
#else
  _mm256_stream_ps(p, reinterpret_cast<__m256>(v));
#endif
}
// The first n lanes of v to p: streamed where that is a full, aligned vector, else stored.
inline void stream_or_store(float* p, vf v, int n) {
  if (n == VL && reinterpret_cast<uintptr_t>(p) % sizeof(vf) == 0) stream(p, v);
  else storen(p, v, n);
}
inline vf vmax(vf a, vf b) { return a > b ? a : b; }
inline vf vmin(vf a, vf b) { return a < b ? a : b; }

// exp, sigmoid, tanh to a few float32 ulps (Cephes' polynomials).
inline vf vexp(vf x) {
  x = vmin(vmax(x, splat(-87.3f)), splat(88.0f));
  vf n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
  x = x - n * 0.693359375f;
  x = x - n * -2.12194440e-4f;
  vf z = x * x;
  vf y = splat(1.9875691500e-4f);
  y = y * x + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * z + x + 1.0f;
  const vi e = (__builtin_convertvector(n, vi) + 127) << 23;
  vf scale;  // 2^n: the bits of e as floats (memcpy: no strict-aliasing breach; a no-op in code)
  std::memcpy(&scale, &e, sizeof scale);
  return y * scale;
}
// 1 / x from the hardware's approximate reciprocal (relative error < 2^-14, AVX2's 1.5 * 2^-12)
// and one Newton step, which squares the error: a few ulps, against vdivps's ~10-cycle
// throughput (measured: experiments/results/bench/README.md).
inline vf vrcp(vf x) {
#if defined(__AVX512F__)
  const vf r = reinterpret_cast<vf>(_mm512_rcp14_ps(reinterpret_cast<__m512>(x)));
#else
  const vf r = reinterpret_cast<vf>(_mm256_rcp_ps(reinterpret_cast<__m256>(x)));
#endif
  return r * (2.0f - x * r);
}
inline vf vsigmoid(vf x) { return vrcp(1.0f + vexp(-x)); }
inline vf vtanh(vf x) {
  vf a = x < 0 ? -x : x;
  vf big = 1.0f - 2.0f * vrcp(vexp(a + a) + 1.0f);
  big = x < 0 ? -big : big;
  vf z = x * x;
  vf p = splat(-5.70498872745e-3f);
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  vf small = p * z * x + x;
  return a < 0.625f ? small : big;
}

// The micro-kernel and its dispatchers are forced inline into every caller. Under GCC's
// unit-wide inlining budget, which callers got them inline changed with unrelated edits: the min
// cells' forward kernel ran 10% slower when a change to the backward left its call out of line.
#define SEQJAX_INLINE inline __attribute__((always_inline))

// acc[r][g] (+)= sum_k a[r][k] * bp[k][g][:], with bp packed [K][NG][VL] (ldb floats from one k
// to the next). A's rows are at the pointers a[r], or with AT A is stored transposed: a[r][k] is
// a[0][k * lda + r] (dW = X^T dZ reads X as it lies). `accumulate` false starts from zero (not
// from a zeroed array: GCC zeroes all of it with a memset call). The tile is copied into locals so
// that it lives in registers (through the reference it would go to memory every k).
template <int R, int NG, bool AT>
SEQJAX_INLINE void microkernel(const float* const* a, int lda, int K, const float* bp, int ldb,
                               vf (&acc)[MR][MAX_NG], bool accumulate) {
  vf c[R][NG];
  const float* ar[R];
  for (int r = 0; r < R; ++r) {
    ar[r] = AT ? a[0] + r : a[r];
    for (int g = 0; g < NG; ++g) c[r][g] = accumulate ? acc[r][g] : vf{};
  }
  for (int k = 0; k < K; ++k, bp += ldb) {
    vf b[NG];
#pragma GCC unroll 4
    for (int g = 0; g < NG; ++g) b[g] = load(bp + g * VL);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const vf av = splat(AT ? ar[0][static_cast<size_t>(k) * lda + r] : ar[r][k]);
#pragma GCC unroll 4
      for (int g = 0; g < NG; ++g) c[r][g] += av * b[g];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int g = 0; g < NG; ++g) acc[r][g] = c[r][g];
}

template <int NG, bool AT>
SEQJAX_INLINE void matmul_tile(int rows, const float* const* a, int lda, int K, const float* bp,
                               int ldb, vf (&acc)[MR][MAX_NG], bool accumulate) {
  switch (rows) {
    case 1: return microkernel<1, NG, AT>(a, lda, K, bp, ldb, acc, accumulate);
    case 2: return microkernel<2, NG, AT>(a, lda, K, bp, ldb, acc, accumulate);
    case 3: return microkernel<3, NG, AT>(a, lda, K, bp, ldb, acc, accumulate);
    case 4: return microkernel<4, NG, AT>(a, lda, K, bp, ldb, acc, accumulate);
    case 5: return microkernel<5, NG, AT>(a, lda, K, bp, ldb, acc, accumulate);
    default: return microkernel<MR, NG, AT>(a, lda, K, bp, ldb, acc, accumulate);
  }
}

template <bool AT>
SEQJAX_INLINE void matmul_tile(int ng, int rows, const float* const* a, int lda, int K,
                               const float* bp, int ldb, vf (&acc)[MR][MAX_NG], bool accumulate) {
  if (ldb == 0) ldb = ng * VL;
  switch (ng) {
    case 1: return matmul_tile<1, AT>(rows, a, lda, K, bp, ldb, acc, accumulate);
    case 2: return matmul_tile<2, AT>(rows, a, lda, K, bp, ldb, acc, accumulate);
    case 3: return matmul_tile<3, AT>(rows, a, lda, K, bp, ldb, acc, accumulate);
    default: return matmul_tile<4, AT>(rows, a, lda, K, bp, ldb, acc, accumulate);
  }
}

// A tile of `rows` rows (a[r]) times ng panels of b; ldb 0 for b packed as [K][ng][VL].
SEQJAX_INLINE void matmul_rows(int ng, int rows, const float* const* a, int K, const float* bp,
                               vf (&acc)[MR][MAX_NG], bool accumulate = false, int ldb = 0) {
  matmul_tile<false>(ng, rows, a, 0, K, bp, ldb, acc, accumulate);
}

// The same with A transposed: a[r][k] at at[k * lda + r].
SEQJAX_INLINE void matmul_cols(int ng, int rows, const float* at, int lda, int K, const float* bp,
                               vf (&acc)[MR][MAX_NG], bool accumulate = false, int ldb = 0) {
  matmul_tile<true>(ng, rows, &at, lda, K, bp, ldb, acc, accumulate);
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Sense-free barrier on a generation counter; spins, then yields (threads may be oversubscribed).
struct alignas(64) Barrier {
  std::atomic<int> arrived{0};
  alignas(64) std::atomic<int> generation{0};
  int n = 1;
  void wait() {
    if (n == 1) return;
    int gen = generation.load(std::memory_order_acquire);
    if (arrived.fetch_add(1, std::memory_order_acq_rel) == n - 1) {
      arrived.store(0, std::memory_order_relaxed);
      generation.store(gen + 1, std::memory_order_release);
      return;
    }
    for (int spins = 0; generation.load(std::memory_order_acquire) == gen; ++spins) {
      if (spins < 200) {
        cpu_relax();
      } else {
        sched_yield();
      }
    }
  }
};

// Long-lived worker threads. A kernel's threads spin on each other every step, so they must
// run on different cores: fresh threads start beside their creator and the scheduler takes
// milliseconds to spread them, while long-lived ones stay spread. The caller sleeps meanwhile.
class Pool {
 public:
  template <typename F>
  void run(int n, F body) {
    if (pid_ != getpid()) {  // after fork() the workers are gone: start new ones
      pid_ = getpid();
      state_ = new State;  // the old state may be locked by a thread that no longer exists
      started_ = 0;
    }
    State& st = *state_;
    while (started_ < n) {
      std::thread(&Pool::work, &st, started_++).detach();
    }
    std::function<void(int)> job = body;
    std::unique_lock<std::mutex> lock(st.mutex);
    st.job = &job;
    st.threads = n;
    st.pending = n;
    ++st.generation;
    st.wake.notify_all();
    st.done.wait(lock, [&] { return st.pending == 0; });
    st.job = nullptr;
  }

 private:
  struct State {
    std::mutex mutex;
    std::condition_variable wake, done;
    const std::function<void(int)>* job = nullptr;
    int threads = 0, pending = 0;
    long generation = 0;
  };
  static void work(State* st, int j) {
    long seen = 0;
    std::unique_lock<std::mutex> lock(st->mutex);
    for (;;) {
      st->wake.wait(lock, [&] { return st->generation != seen; });
      seen = st->generation;
      if (j >= st->threads) continue;
      const std::function<void(int)>* job = st->job;
      lock.unlock();
      (*job)(j);
      lock.lock();
      if (--st->pending == 0) st->done.notify_one();
    }
  }
  State* state_ = new State;
  int started_ = 0;
  pid_t pid_ = getpid();
};

Pool pool;

template <typename F>
void parallel(int n, F body) {
  if (n == 1) return body(0);
  pool.run(n, body);
}

// One kernel at a time: XLA may run independent thunks (e.g. the two directions of a
// bidirectional layer) concurrently, and spinning threads must not outnumber the cores.
std::mutex kernel_lock;

struct Panels {  // the VL-unit panels of H hidden units, split over threads
  int H, count, threads;
  int begin(int j) const { return count * j / threads; }
  int end(int j) const { return count * (j + 1) / threads; }
  int lanes(int p) const { return std::min(VL, H - p * VL); }
};

Panels make_panels(int H, int threads) {
  int count = (H + VL - 1) / VL;
  return Panels{H, count, std::max(1, std::min(threads, count))};
}

// Packs columns {gate g, unit (p + q)*VL + l} of w [K, G*H] for panels q < np as
// [K][np][G][VL] (zero-padded past H).
void pack_gate_panel(const float* w, int K, int H, int G, int p, float* out, int np = 1) {
  for (int k = 0; k < K; ++k)
    for (int q = 0; q < np; ++q)
      for (int g = 0; g < G; ++g) {
        float* dst = out + ((k * np + q) * G + g) * VL;
        const int u0 = (p + q) * VL, n = std::min(VL, H - u0);
        const float* src = w + static_cast<int64_t>(k) * G * H + g * H + u0;
        for (int l = 0; l < VL; ++l) dst[l] = l < n ? src[l] : 0.0f;
      }
}

// Packs units [p*VL, (p + ng)*VL) of w, element (u, k) at w[u * su + k * sk], as [K][ng][VL]
// (zero-padded past N units): the B operand of a micro-kernel product. Rows of w [N, K]
// transposed (su = ld, sk = 1), e.g. dh[:, units] = dZ W_h[units, :]^T; or columns of w [K, N]
// (su = 1, sk = ld), e.g. x W_x[:, :H].
void pack_units(const float* w, int64_t su, int64_t sk, int N, int K, int p, int ng, float* out) {
  for (int k = 0; k < K; ++k)
    for (int q = 0; q < ng; ++q)
      for (int l = 0; l < VL; ++l) {
        int u = (p + q) * VL + l;
        out[(k * ng + q) * VL + l] = u < N ? w[u * su + k * sk] : 0.0f;
      }
}

// Maps this thread's share of an output's fresh pages in one call. Outputs live in XLA's
// per-call temporaries, often fresh memory; when threads first write a page that spans rows
// written by several of them, each takes the page fault (measured at S1: twice the faults and a
// forward 24% slower without this; experiments/results/bench/README.md has the figures).
void populate(float* data, size_t count, int j, int threads) {
#ifdef MADV_POPULATE_WRITE
  if (data == nullptr || count == 0) return;
  const uintptr_t page = 4096, lo = reinterpret_cast<uintptr_t>(data), span = count * sizeof(float);
  uintptr_t begin = lo + span * j / threads, end = lo + span * (j + 1) / threads;
  begin = (begin + page - 1) & ~(page - 1);  // whole pages inside the buffer only
  end = end & ~(page - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE);
#else
  (void)data, (void)count, (void)j, (void)threads;
#endif
}

// A thread's scratch, kept across calls (the pool's threads live on): packed weights are a few
// MB at large H, and fresh memory every call would take a page fault per 4 KB.
float* scratch(int slot, size_t count) {
  thread_local std::vector<float> buffers[2];
  std::vector<float>& buffer = buffers[slot];
  if (buffer.size() < count) buffer.resize(count);
  return buffer.data();
}

// One scratch slot cut into consecutive arrays of the given sizes (floats), in that order.
template <size_t N>
std::array<float*, N> scratch_arrays(int slot, const size_t (&counts)[N]) {
  size_t total = 0;
  for (size_t count : counts) total += count;
  float* next = scratch(slot, total);
  std::array<float*, N> arrays;
  for (size_t k = 0; k < N; ++k) {
    arrays[k] = next;
    next += counts[k];
  }
  return arrays;
}

// ---------------------------------------------------------------------------- cells
//
// The kernels are templates on the cell, whose struct holds its gate math on the vectors of one
// panel of one batch row; the kernels load and store around it. Gate buffers are [.., G*H] with
// gate blocks of H (the layout of the params).

struct Dims {
  int T, B, I, H;
};

// Step indices in processing order.
inline int step_at(int s, int T, bool reverse) { return reverse ? T - 1 - s : s; }

struct LstmCell {
  static constexpr int G = 4;  // gates i, f, g, o

  // From the gates' pre-activations z (biases included) and c_{t-1}: the gates (saved for the
  // backward), c_t and h_t.
  static SEQJAX_INLINE void forward(const vf (&z)[MAX_NG], vf c_in, vf (&act)[G], vf& c, vf& h) {
    act[0] = vsigmoid(z[0]);
    act[1] = vsigmoid(z[1]);
    act[2] = vtanh(z[2]);
    act[3] = vsigmoid(z[3]);
    c = act[1] * c_in + act[0] * act[2];
    h = act[3] * vtanh(c);
  }

  // From the saved gates, c_{t-1} and the cotangents of h_t and c_t: the gradients of the gates'
  // pre-activations dz, and the part of c_{t-1}'s cotangent that does not go through W_h.
  static SEQJAX_INLINE void backward(const vf (&act)[G], vf c_in, vf dh, vf dc, vf (&dz)[G],
                                     vf& dc_in) {
    const vf i = act[0], f = act[1], g = act[2], o = act[3];
    const vf tc = vtanh(f * c_in + i * g);
    dc += dh * o * (1.0f - tc * tc);
    dz[0] = dc * g * i * (1.0f - i);
    dz[1] = dc * c_in * f * (1.0f - f);
    dz[2] = dc * i * (1.0f - g * g);
    dz[3] = dh * tc * o * (1.0f - o);
    dc_in = dc * f;
  }
};

struct GruCell {
  static constexpr int G = 3;  // gates r, z, n; h_n = h W_hn + b_hn is saved apart

  // From the pre-activations z (x W_x + b, plus h W_h + b_h for r and z only), h_n and h_{t-1}:
  // the gates (saved for the backward) and h_t.
  static SEQJAX_INLINE void forward(const vf (&z)[MAX_NG], vf h_n, vf h_in, vf (&act)[G],
                                    vf& h) {
    act[0] = vsigmoid(z[0]);
    act[1] = vsigmoid(z[1]);
    act[2] = vtanh(z[2] + act[0] * h_n);
    h = (1.0f - act[1]) * act[2] + act[1] * h_in;
  }

  // From the saved gates, h_n, h_{t-1} and h_t's cotangent: the gradients of r's and z's
  // pre-activations and of n's (tanh's argument) in dz, and the part of h_{t-1}'s cotangent
  // that does not go through W_h.
  static SEQJAX_INLINE void backward(const vf (&act)[G], vf h_n, vf h_in, vf dh, vf (&dz)[G],
                                     vf& dh_in) {
    const vf r = act[0], z = act[1], n = act[2];
    dz[2] = dh * (1.0f - z) * (1.0f - n * n);
    dz[1] = dh * (h_in - n) * z * (1.0f - z);
    dz[0] = dz[2] * h_n * r * (1.0f - r);
    dh_in = dh * z;
  }
};

// ---------------------------------------------------------------------------- forward

struct ForwardArgs {
  Dims d;
  bool reverse;
  int threads;
  const float *xs, *w_x, *w_h, *b, *b_h, *h0, *c0;  // b_h: GRU only; c0: LSTM only
  const bool *mask, *reset;
  float *ys, *h_T, *c_T, *acts, *h_in, *c_in, *h_n;  // c_T, c_in: LSTM only; h_n: GRU only
};

template <typename Cell>
void forward(const ForwardArgs& a) {
  constexpr bool lstm = Cell::G == 4;
  const Dims d = a.d;
  const int T = d.T, B = d.B, I = d.I, H = d.H, G = Cell::G;
  Panels panels = make_panels(H, a.threads);
  std::vector<float> h_buf(2 * static_cast<size_t>(B) * H), c_buf(lstm ? B * H : 0);
  std::memcpy(h_buf.data(), a.h0, sizeof(float) * B * H);
  if (lstm) std::memcpy(c_buf.data(), a.c0, sizeof(float) * B * H);
  Barrier barrier;
  barrier.n = panels.threads;

  parallel(panels.threads, [&](int j) {
    const size_t TBH = static_cast<size_t>(T) * B * H;
    populate(a.ys, TBH, j, panels.threads);
    populate(a.acts, TBH * G, j, panels.threads);
    populate(a.h_in, TBH, j, panels.threads);
    populate(lstm ? a.c_in : a.h_n, TBH, j, panels.threads);
    barrier.wait();
    const int p0 = panels.begin(j), p1 = panels.end(j), np = p1 - p0;
    float* wx = scratch(0, static_cast<size_t>(np) * I * G * VL);
    float* wh = scratch(1, static_cast<size_t>(np) * H * G * VL);
    for (int p = p0; p < p1; ++p) {
      pack_gate_panel(a.w_x, I, H, G, p, wx + static_cast<size_t>(p - p0) * I * G * VL);
      pack_gate_panel(a.w_h, H, H, G, p, wh + static_cast<size_t>(p - p0) * H * G * VL);
    }
    const float* rows_x[MR];
    const float* rows_h[MR];
    for (int s = 0; s < T; ++s) {
      const int t = step_at(s, T, a.reverse);
      const float* h_prev = h_buf.data() + static_cast<size_t>(s % 2) * B * H;
      float* h_next = h_buf.data() + static_cast<size_t>((s + 1) % 2) * B * H;
      const size_t tb = static_cast<size_t>(t) * B;
      for (int p = p0; p < p1; ++p) {
        const int u0 = p * VL, n = panels.lanes(p);
        const float* bx = wx + static_cast<size_t>(p - p0) * I * G * VL;
        const float* bh = wh + static_cast<size_t>(p - p0) * H * G * VL;
        vf bias[MAX_NG], bias_hn = vf{};
        for (int g = 0; g < G; ++g) {
          bias[g] = loadn(a.b + g * H + u0, n);
          if (!lstm && g < 2) bias[g] += loadn(a.b_h + g * H + u0, n);
        }
        if (!lstm) bias_hn = loadn(a.b_h + 2 * H + u0, n);
        for (int r0 = 0; r0 < B; r0 += MR) {
          const int rows = std::min(MR, B - r0);
          for (int r = 0; r < rows; ++r) {
            const int bi = r0 + r;
            rows_x[r] = a.xs + (tb + bi) * I;
            rows_h[r] = a.reset[tb + bi] ? a.h0 + static_cast<size_t>(bi) * H
                                         : h_prev + static_cast<size_t>(bi) * H;
          }
          vf acc[MR][MAX_NG];
          vf h_n[MR];
          matmul_rows(G, rows, rows_h, H, bh, acc);
          if (!lstm) {  // GRU: keep h W_hn apart, it is scaled by r
            for (int r = 0; r < rows; ++r) {
              h_n[r] = acc[r][2] + bias_hn;
              acc[r][2] = vf{};
            }
          }
          matmul_rows(G, rows, rows_x, I, bx, acc, true);
          for (int r = 0; r < rows; ++r) {
            const int bi = r0 + r;
            const size_t row = tb + bi;
            const bool reset = a.reset[row], valid = a.mask[row];
            const vf hin = loadn(rows_h[r] + u0, n);
            float* acts = a.acts + row * G * H + u0;
            vf z[MAX_NG], act[G], h;
            for (int g = 0; g < G; ++g) z[g] = acc[r][g] + bias[g];
            if constexpr (lstm) {
              const float* c_src = reset ? a.c0 : c_buf.data();
              const vf cin = loadn(c_src + static_cast<size_t>(bi) * H + u0, n);
              vf c;
              LstmCell::forward(z, cin, act, c, h);
              storen(a.c_in + row * H + u0, cin, n);
              if (valid) storen(c_buf.data() + static_cast<size_t>(bi) * H + u0, c, n);
            } else {
              GruCell::forward(z, h_n[r], hin, act, h);
              storen(a.h_n + row * H + u0, h_n[r], n);
            }
            for (int g = 0; g < G; ++g) storen(acts + g * H, act[g], n);
            storen(a.h_in + row * H + u0, hin, n);
            const vf h_keep = valid ? h : loadn(h_prev + static_cast<size_t>(bi) * H + u0, n);
            storen(h_next + static_cast<size_t>(bi) * H + u0, h_keep, n);
            storen(a.ys + row * H + u0, valid ? h : vf{}, n);
          }
        }
      }
      barrier.wait();
    }
  });
  std::memcpy(a.h_T, h_buf.data() + static_cast<size_t>(T % 2) * B * H, sizeof(float) * B * H);
  if (lstm) std::memcpy(a.c_T, c_buf.data(), sizeof(float) * B * H);
}

// ---------------------------------------------------------------------------- backward

struct BackwardArgs {
  Dims d;
  bool reverse;
  int threads;
  const float *w_h, *acts, *h_in, *c_in, *h_n, *dys, *dh_T, *dc_T;  // h_in, h_n: GRU; c_*: LSTM
  const bool *mask, *reset;
  // dz: the recurrent side's gate gradients (LSTM: dZ, the input side's too; GRU: dZh = [dr, dz,
  // dn * r]); GRU: dnx = dn * (1 - r), which the input side's dZx adds to dZh's n block. Each may
  // alias the input it replaces (acts, h_n): an element is read before it is written.
  float *dz, *dnx, *dh0, *dc0;  // dnx: GRU only; dc0: LSTM only
  float *db, *db_h;             // db_h: GRU only
};

template <typename Cell>
void backward(const BackwardArgs& a) {
  constexpr bool lstm = Cell::G == 4;
  const Dims d = a.d;
  const int T = d.T, B = d.B, H = d.H, G = Cell::G, K = G * H;
  Panels panels = make_panels(H, a.threads);
  const size_t BH = static_cast<size_t>(B) * H;
  // Carried cotangents, gradients reaching carry0 through resets, and each step's share of
  // d carry_in that does not go through W_h (dc * f for the LSTM, dh * z for the GRU).
  std::vector<float> dh(BH), dc(lstm ? BH : 0), dh0(BH, 0.0f), dc0(lstm ? BH : 0, 0.0f);
  std::vector<float> direct(BH);
  std::memcpy(dh.data(), a.dh_T, sizeof(float) * BH);
  if (lstm) std::memcpy(dc.data(), a.dc_T, sizeof(float) * BH);
  Barrier barrier;
  barrier.n = panels.threads;

  parallel(panels.threads, [&](int j) {
    populate(a.dz, static_cast<size_t>(T) * B * K, j, panels.threads);
    populate(a.dnx, lstm ? 0 : static_cast<size_t>(T) * B * H, j, panels.threads);
    barrier.wait();
    const int p0 = panels.begin(j), p1 = panels.end(j);
    float* wt = scratch(0, static_cast<size_t>(p1 - p0) * K * VL);
    for (int p = p0; p < p1; p += MAX_NG)
      pack_units(a.w_h, K, 1, H, K, p, std::min(MAX_NG, p1 - p),
                 wt + static_cast<size_t>(p - p0) * K * VL);
    const float* rows[MR];
    // Bias gradients of own units: sums of the gate gradients (and, GRU, of dn * r for b_hn).
    std::vector<vf> db(static_cast<size_t>(p1 - p0) * (G + 1), vf{});
    for (int s = T - 1; s >= 0; --s) {
      const int t = step_at(s, T, a.reverse);
      const size_t tb = static_cast<size_t>(t) * B;
      // Gate gradients of own units.
      for (int bi = 0; bi < B; ++bi) {
        const size_t row = tb + bi;
        const bool valid = a.mask[row];
        const float* acts = a.acts + row * G * H;
        float* dz_row = a.dz + row * G * H;
        for (int p = p0; p < p1; ++p) {
          const int u0 = p * VL, n = panels.lanes(p);
          const size_t at = static_cast<size_t>(bi) * H + u0;
          vf* db_p = db.data() + static_cast<size_t>(p - p0) * (G + 1);
          const vf dh_t = valid ? loadn(dh.data() + at, n) + loadn(a.dys + row * H + u0, n)
                                : vf{};
          vf act[G], dz[G], dir;
          for (int g = 0; g < G; ++g) act[g] = loadn(acts + g * H + u0, n);
          if constexpr (lstm) {
            const vf dc_t = valid ? loadn(dc.data() + at, n) : vf{};
            LstmCell::backward(act, loadn(a.c_in + row * H + u0, n), dh_t, dc_t, dz, dir);
            for (int q = 0; q < G; ++q) {
              storen(dz_row + q * H + u0, dz[q], n);
              db_p[q] += dz[q];
            }
          } else {
            // dZh = [dr, dz, dn r] feeds W_h; the input side's dn (1 - r) goes apart (dnx).
            const vf hn = loadn(a.h_n + row * H + u0, n), hin = loadn(a.h_in + row * H + u0, n);
            GruCell::backward(act, hn, hin, dh_t, dz, dir);
            const vf rg = act[0], dn = dz[2];
            storen(dz_row + u0, dz[0], n);
            storen(dz_row + H + u0, dz[1], n);
            storen(dz_row + 2 * H + u0, dn * rg, n);
            storen(a.dnx + row * H + u0, dn * (1.0f - rg), n);
            db_p[0] += dz[0];
            db_p[1] += dz[1];
            db_p[2] += dn;
            db_p[3] += dn * rg;
          }
          storen(direct.data() + at, dir, n);
        }
      }
      barrier.wait();
      // dh_{t-1}[:, own] = dZ_t W_h[own, :]^T, then masks and resets.
      for (int p = p0; p < p1; p += MAX_NG) {
        const int ng = std::min(MAX_NG, p1 - p);
        const float* bp = wt + static_cast<size_t>(p - p0) * K * VL;
        for (int r0 = 0; r0 < B; r0 += MR) {
          const int nrows = std::min(MR, B - r0);
          for (int r = 0; r < nrows; ++r) rows[r] = a.dz + (tb + r0 + r) * K;
          vf acc[MR][MAX_NG];
          matmul_rows(ng, nrows, rows, K, bp, acc);
          for (int r = 0; r < nrows; ++r) {
            const int bi = r0 + r;
            const size_t row = tb + bi;
            for (int q = 0; q < ng; ++q) {
              const int u0 = (p + q) * VL, n = panels.lanes(p + q);
              const size_t at = static_cast<size_t>(bi) * H + u0;
              vf dh_in = acc[r][q] + (lstm ? vf{} : loadn(direct.data() + at, n));
              vf dc_in = lstm ? loadn(direct.data() + at, n) : vf{};
              if (a.reset[row]) {  // a reset step read carry0, not the previous carry
                storen(dh0.data() + at, loadn(dh0.data() + at, n) + dh_in, n);
                if (lstm) storen(dc0.data() + at, loadn(dc0.data() + at, n) + dc_in, n);
                dh_in = vf{};
                dc_in = vf{};
              }
              if (a.mask[row]) {  // a masked step passed the previous carry through unchanged
                storen(dh.data() + at, dh_in, n);
                if (lstm) storen(dc.data() + at, dc_in, n);
              }
            }
          }
        }
      }
    }
    for (int p = p0; p < p1; ++p) {
      const int u0 = p * VL, n = panels.lanes(p);
      const vf* db_p = db.data() + static_cast<size_t>(p - p0) * (G + 1);
      for (int g = 0; g < G; ++g) storen(a.db + g * H + u0, db_p[g], n);
      if (!lstm) {
        storen(a.db_h + u0, db_p[0], n);
        storen(a.db_h + H + u0, db_p[1], n);
        storen(a.db_h + 2 * H + u0, db_p[3], n);
      }
    }
  });
  for (size_t k = 0; k < BH; ++k) a.dh0[k] = dh[k] + dh0[k];
  if (lstm)
    for (size_t k = 0; k < BH; ++k) a.dc0[k] = dc[k] + dc0[k];
}

// ---------------------------------------------------------------------------- minGRU, minLSTM
//
// h_t = a_t h_{t-1} + b_t with a_t, b_t from x_t alone: no recurrent matmul, so every hidden unit
// runs on its own and the threads never meet. Thread j owns the units of its panels: per step,
// x_t times its packed columns of W_x (register tiles as above), the coefficients and the
// recurrence on the tile.
//   minGRU  (gates z, v):    h = (1 - z) h_in + z g(v)
//   minLSTM (gates f, i, v): h = (f h_in + i g(v)) / (f + i)
// with z, f, i sigmoids and g(v) = v + 0.5 for v >= 0, else sigmoid(v). The forward returns the
// state after every step (a masked step keeps the previous one), which is the output where no
// step is masked and, one step back, the state each step read: with the pre-activations
// x W + b, all the backward needs. It saves the pre-activations of the last S gates only (the
// caller chooses S by the shape of xw); the backward recomputes the first G - S from x. The
// backward (threads own batch rows there) returns the input, weight and bias gradients itself;
// see min_backward.

struct MinForwardArgs {
  Dims d;
  bool reverse;
  int threads, G, S;  // G = 2 (minGRU) or 3 (minLSTM); S: gates saved, the last S of the G
  const float *xs, *w_x, *b, *h0;
  const bool *mask, *reset;
  float *hs, *xw;
};

inline vf positive_g(vf v) { return v >= 0.0f ? v + 0.5f : vsigmoid(v); }

// minLSTM's normalised gates f / (f + i) and i / (f + i) for f = sigmoid(a), i = sigmoid(b):
// (1 + e^-b) / (2 + e^-a + e^-b) and (1 + e^-a) / (...), numerator and denominator scaled by
// e^-m, m = max(-a, -b, 0), so that nothing overflows where both sigmoids underflow (the plain
// ratio is 0 / 0 there).
inline void min_lstm_gates(vf a, vf b, vf& f_norm, vf& i_norm) {
  const vf m = vmax(vmax(-a, -b), vf{});
  const vf e0 = vexp(-m), ea = vexp(-a - m), eb = vexp(-b - m);
  const vf inv = vrcp(e0 + e0 + ea + eb);
  f_norm = (e0 + eb) * inv;
  i_norm = (e0 + ea) * inv;
}

// The state step s (processing order) read for batch row bi: h0 at the start and after a reset,
// else the state after the step before.
template <typename Args>  // MinForwardArgs or MinBackwardArgs
inline const float* min_state_in(const Args& a, int s, int bi, bool after_reset) {
  const int T = a.d.T, B = a.d.B, H = a.d.H;
  if (s == 0 || (after_reset && a.reset[static_cast<size_t>(step_at(s, T, a.reverse)) * B + bi]))
    return a.h0 + static_cast<size_t>(bi) * H;
  return a.hs + (static_cast<size_t>(step_at(s - 1, T, a.reverse)) * B + bi) * H;
}

// The gates and the recurrence on one register tile of step s: batch rows [r0, r0 + rows),
// panels [p, p + NP) of G gates each. With G and NP constants the compiler keeps the tile in
// registers and overlaps the exp chains of its vectors (forward kernel 8% faster than a loop over
// runtime G and NP, measured in the results README). The saved pre-activations are streamed:
// only the backward reads them, after the whole sequence.
template <int G, int NP>
inline void min_forward_tile(const MinForwardArgs& a, const Panels& panels, int s, size_t tb,
                             int r0, int rows, int p, const vf (&bias)[MAX_NG],
                             const vf (&acc)[MR][MAX_NG]) {
  const int H = a.d.H, S = a.S;
  for (int r = 0; r < rows; ++r) {
    const int bi = r0 + r;
    const size_t row = tb + bi;
    const bool valid = a.mask[row];
    // A masked step keeps the state before it, even where it would have reset.
    const float* h_in = min_state_in(a, s, bi, valid);
    float* xw = a.xw + row * S * H;
#pragma GCC unroll 2
    for (int q = 0; q < NP; ++q) {
      const int u0 = (p + q) * VL, n = panels.lanes(p + q);
      vf z[G];
#pragma GCC unroll 3
      for (int g = 0; g < G; ++g) {
        z[g] = acc[r][q * G + g] + bias[q * G + g];
        if (g < G - S) continue;
        stream_or_store(xw + (g - (G - S)) * H + u0, z[g], n);
      }
      const vf hin = loadn(h_in + u0, n);
      vf h = hin;
      if (valid) {
        if constexpr (G == 2) {
          h = hin + vsigmoid(z[0]) * (positive_g(z[1]) - hin);
        } else {
          vf f_norm, i_norm;
          min_lstm_gates(z[0], z[1], f_norm, i_norm);
          h = f_norm * hin + i_norm * positive_g(z[G - 1]);
        }
      }
      storen(a.hs + row * H + u0, h, n);
    }
  }
}

// The rows of xs [B, T, I] at processing steps [s0, s0 + n), time-major into out [n][B][I]:
// each batch row's steps are read as one run.
void stage_steps(const float* xs, const Dims& d, bool reverse, int s0, int n, float* out) {
  const size_t I = d.I;
  for (int b = 0; b < d.B; ++b)
    for (int c = 0; c < n; ++c)
      std::memcpy(out + (static_cast<size_t>(c) * d.B + b) * I,
                  xs + (static_cast<size_t>(b) * d.T + step_at(s0 + c, d.T, reverse)) * I,
                  sizeof(float) * I);
}

void min_forward(const MinForwardArgs& a) {
  const Dims d = a.d;
  const int T = d.T, B = d.B, I = d.I, H = d.H, G = a.G, S = a.S;
  Panels panels = make_panels(H, a.threads);
  // xs is batch-major, and one step's rows, T * I apart, alias in the caches where the
  // micro-kernel reads them in place: each thread copies a few steps' rows into a time-major
  // chunk of at most 256 KB first.
  const int chunk = static_cast<int>(std::clamp<size_t>(
      (size_t{1} << 16) / (static_cast<size_t>(B) * I), 1, 8));

  parallel(panels.threads, [&](int j) {
    const size_t TBH = static_cast<size_t>(T) * B * H;
    populate(a.hs, TBH, j, panels.threads);
    populate(a.xw, TBH * S, j, panels.threads);
    const int p0 = panels.begin(j), p1 = panels.end(j);
    // minGRU's two gates fill half a register tile: two panels go through it at once, which
    // halves the broadcasts per multiply-add (measured in the results README).
    const int per_tile = MAX_NG / G;
    const auto group = [&](int p) { return std::min(per_tile, p1 - p); };
    float* wx = scratch(0, static_cast<size_t>(p1 - p0) * I * G * VL);
    for (int p = p0; p < p1; p += group(p))
      pack_gate_panel(a.w_x, I, H, G, p, wx + static_cast<size_t>(p - p0) * I * G * VL, group(p));
    float* xc = scratch(1, static_cast<size_t>(chunk) * B * I);
    const float* rows_x[MR];
    for (int s = 0; s < T; ++s) {
      const size_t tb = static_cast<size_t>(step_at(s, T, a.reverse)) * B;
      if (s % chunk == 0) stage_steps(a.xs, d, a.reverse, s, std::min(chunk, T - s), xc);
      const float* x_t = xc + static_cast<size_t>(s % chunk) * B * I;
      for (int p = p0; p < p1; p += group(p)) {
        const int np = group(p);
        const float* bx = wx + static_cast<size_t>(p - p0) * I * G * VL;
        vf bias[MAX_NG];
        for (int q = 0; q < np; ++q)
          for (int g = 0; g < G; ++g)
            bias[q * G + g] = loadn(a.b + g * H + (p + q) * VL, panels.lanes(p + q));
        for (int r0 = 0; r0 < B; r0 += MR) {
          const int rows = std::min(MR, B - r0);
          for (int r = 0; r < rows; ++r) rows_x[r] = x_t + static_cast<size_t>(r0 + r) * I;
          vf acc[MR][MAX_NG];
          matmul_rows(np * G, rows, rows_x, I, bx, acc);
          if (G == 3) min_forward_tile<3, 1>(a, panels, s, tb, r0, rows, p, bias, acc);
          else if (np == 2) min_forward_tile<2, 2>(a, panels, s, tb, r0, rows, p, bias, acc);
          else min_forward_tile<2, 1>(a, panels, s, tb, r0, rows, p, bias, acc);
        }
      }
    }
    _mm_sfence();  // the streamed pre-activations
  });
}

struct MinBackwardArgs {
  Dims d;
  bool reverse;
  int threads, G, S;  // as in MinForwardArgs
  const float *xs, *w_x, *b, *xw, *hs, *h0, *dhs;
  const bool *mask, *reset;
  float *dxs, *dw_x, *db, *dh0;  // dxs batch-major, [B, T, I]
};

// Rows [0, rows) of a register tile (panels [p, p + ng) of N columns) at c, row stride ldc.
inline void load_tile(const float* c, int64_t ldc, int N, int rows, int p, int ng,
                      vf (&acc)[MR][MAX_NG]) {
  for (int r = 0; r < rows; ++r)
    for (int g = 0; g < ng; ++g) {
      const int n = (p + g) * VL;
      acc[r][g] = loadn(c + r * ldc + n, std::min(VL, N - n));
    }
}
// `streamed`: bypass the caches where possible (outputs that XLA reads after the kernel).
inline void store_tile(float* c, int64_t ldc, int N, int rows, int p, int ng,
                       const vf (&acc)[MR][MAX_NG], bool streamed = false) {
  for (int r = 0; r < rows; ++r)
    for (int g = 0; g < ng; ++g) {
      const int n = (p + g) * VL, lanes = std::min(VL, N - n);
      float* dst = c + r * ldc + n;
      if (streamed) stream_or_store(dst, acc[r][g], lanes);
      else storen(dst, acc[r][g], lanes);
    }
}

// One step of batch row bi (processing step s): the gradients w.r.t. its pre-activations,
// every unit, into dz (a row of d(x W + b)), added to db. `recomputed` holds the row's first
// G - S pre-activations (the rest are saved in xw). dh holds d h_t on entry and d h_{t-1} on
// return; what reaches h0 through a reset is added to dh0 instead. G is a constant so that the
// compiler overlaps the units' exp chains (as in min_forward_tile).
template <int G>
inline void min_row_gradients(const MinBackwardArgs& a, int s, int bi, const float* recomputed,
                              float* dz, float* db, float* dh, float* dh0) {
  const int H = a.d.H, R = G - a.S;
  const size_t row = static_cast<size_t>(step_at(s, a.d.T, a.reverse)) * a.d.B + bi;
  const float* dhs = a.dhs + row * H;
  if (!a.mask[row]) {  // the step passed the state through
    std::fill(dz, dz + G * H, 0.0f);
    for (int u0 = 0; u0 < H; u0 += VL) {
      const int n = std::min(VL, H - u0);
      storen(dh + u0, loadn(dh + u0, n) + loadn(dhs + u0, n), n);
    }
    return;
  }
  const float* pre[G];  // each gate's pre-activations
  for (int g = 0; g < G; ++g)
    pre[g] = g < R ? recomputed + g * H : a.xw + row * a.S * H + (g - R) * H;
  const float* h_in = min_state_in(a, s, bi, true);
  const bool reset = a.reset[row];  // the step read h0, not the previous state
  for (int u0 = 0; u0 < H; u0 += VL) {
    const int n = std::min(VL, H - u0);
    const vf dh_t = loadn(dh + u0, n) + loadn(dhs + u0, n);
    const vf hin = loadn(h_in + u0, n);
    const vf v = loadn(pre[G - 1] + u0, n);
    const vf sv = vsigmoid(v);
    const vf gv = v >= 0.0f ? v + 0.5f : sv;
    const vf dgv = v >= 0.0f ? splat(1.0f) : sv * (1.0f - sv);
    vf dx[G], dhin;
    if constexpr (G == 2) {
      const vf z = vsigmoid(loadn(pre[0] + u0, n));
      dx[0] = dh_t * (gv - hin) * z * (1.0f - z);
      dx[1] = dh_t * z * dgv;
      dhin = dh_t * (1.0f - z);
    } else {
      // h = f' h_in + i' g(v), f' = sigmoid(L), L = log sigmoid(k_f) - log sigmoid(k_i).
      const vf k_f = loadn(pre[0] + u0, n), k_i = loadn(pre[1] + u0, n);
      vf f_norm, i_norm;
      min_lstm_gates(k_f, k_i, f_norm, i_norm);
      const vf d_log_ratio = dh_t * (hin - gv) * f_norm * i_norm;
      dx[0] = d_log_ratio * vsigmoid(-k_f);
      dx[1] = -d_log_ratio * vsigmoid(-k_i);
      dx[2] = dh_t * i_norm * dgv;
      dhin = dh_t * f_norm;
    }
    for (int g = 0; g < G; ++g) {
      storen(dz + g * H + u0, dx[g], n);
      storen(db + g * H + u0, loadn(db + g * H + u0, n) + dx[g], n);
    }
    if (reset) {
      storen(dh0 + u0, loadn(dh0 + u0, n) + dhin, n);
      storen(dh + u0, vf{}, n);
    } else {
      storen(dh + u0, dhin, n);
    }
  }
}

// Threads own batch rows. Per step, each own row's gradients w.r.t. its pre-activations (a row
// of dZ = d(x W + b), every unit) go to a block buffer that stays in cache; then the step's
// rows of dX = dZ W_x^T, and after every block of steps dW_x += X^T dZ over the block (the
// thread's share, summed over threads at the end). dZ never goes through main memory, and the
// input and weight gradients need no separate passes over it.
void min_backward(const MinBackwardArgs& a) {
  const Dims d = a.d;
  const int T = d.T, B = d.B, I = d.I, H = d.H, G = a.G, K = G * H, RH = (G - a.S) * H;
  const int threads = std::min(a.threads, B);
  const int in_panels = (I + VL - 1) / VL, k_panels = (K + VL - 1) / VL;
  const int64_t ld_dx = static_cast<int64_t>(T) * I;  // dX's batch rows apart
  const int r_panels = (RH + VL - 1) / VL;  // the recomputed pre-activations' columns
  const int groups = (k_panels + MAX_NG - 1) / MAX_NG, GW = MAX_NG * VL;  // dZ's panel groups
  if (threads < 1) {  // no rows
    std::fill(a.dw_x, a.dw_x + static_cast<size_t>(I) * K, 0.0f);
    std::fill(a.db, a.db + K, 0.0f);
    return;
  }
  std::vector<float*> dw_parts(threads), db_parts(threads);
  Barrier barrier;
  barrier.n = threads;

  parallel(threads, [&](int j) {
    populate(a.dxs, static_cast<size_t>(T) * B * I, j, threads);
    const int b0 = B * j / threads, rows_own = B * (j + 1) / threads - b0;
    const int steps_per_block = std::max(1, 128 / rows_own), KB = steps_per_block * rows_own;
    const size_t own_h = static_cast<size_t>(rows_own) * H;
    const size_t n_dw = static_cast<size_t>(I) * K;
    const auto [wt, zr, zp, xb, dw, dbp, dh, dh0, wr, pre] = scratch_arrays(0, {
        static_cast<size_t>(in_panels) * VL * K,  // wt: W_x^T packed
        static_cast<size_t>(rows_own) * K,        // zr: the step's own rows of dZ
        static_cast<size_t>(groups) * KB * GW,    // zp: the block's rows of dZ by panel group,
                                                  //     [group][KB][GW], zero-padded past K
        static_cast<size_t>(KB) * I,              // xb: the block's rows of X
        n_dw,                                     // dw: this thread's dW_x
        static_cast<size_t>(K),                   // dbp: this thread's db
        own_h, own_h,                             // dh, dh0 of own rows
        static_cast<size_t>(r_panels) * VL * I,   // wr: W_x's recomputed columns packed
        static_cast<size_t>(rows_own) * RH});     // pre: a step's own recomputed rows
    std::fill(dw, dw + n_dw, 0.0f);
    std::fill(dbp, dbp + K, 0.0f);
    std::fill(dh, dh + own_h, 0.0f);
    std::fill(dh0, dh0 + own_h, 0.0f);
    dw_parts[j] = dw;
    db_parts[j] = dbp;
    for (int p = 0; p < in_panels; p += MAX_NG)
      pack_units(a.w_x, K, 1, I, K, p, std::min(MAX_NG, in_panels - p),
                 wt + static_cast<size_t>(p) * K * VL);
    for (int p = 0; p < r_panels; p += MAX_NG)
      pack_units(a.w_x, 1, K, RH, I, p, std::min(MAX_NG, r_panels - p),
                 wr + static_cast<size_t>(p) * I * VL);
    const float* rows[MR];
    int kb = 0;  // rows of the block filled
    for (int s = T - 1; s >= 0; --s) {
      const size_t t = step_at(s, T, a.reverse);
      // The own rows of x_t (xs is batch-major) into the block's rows of X.
      float* x_t = xb + static_cast<size_t>(kb) * I;
      for (int r = 0; r < rows_own; ++r)
        std::memcpy(x_t + static_cast<size_t>(r) * I,
                    a.xs + ((b0 + r) * static_cast<size_t>(T) + t) * I, sizeof(float) * I);
      // The own rows' recomputed pre-activations x W_x[:, :RH] + b[:RH], as the forward made them.
      for (int r0 = 0; r0 < rows_own; r0 += MR) {
        const int nrows = std::min(MR, rows_own - r0);
        for (int r = 0; r < MR; ++r)
          rows[r] = x_t + static_cast<size_t>(r0 + std::min(r, nrows - 1)) * I;
        for (int p = 0; p < r_panels; p += MAX_NG) {
          const int ng = std::min(MAX_NG, r_panels - p);
          vf acc[MR][MAX_NG];
          matmul_rows(ng, nrows, rows, I, wr + static_cast<size_t>(p) * I * VL, acc);
          for (int g = 0; g < ng; ++g) {
            const int n = (p + g) * VL;
            const vf bias = loadn(a.b + n, std::min(VL, RH - n));
            for (int r = 0; r < nrows; ++r) acc[r][g] += bias;
          }
          store_tile(pre + static_cast<size_t>(r0) * RH, RH, RH, nrows, p, ng, acc);
        }
      }
      for (int r = 0; r < rows_own; ++r) {
        float* dz = zr + static_cast<size_t>(r) * K;
        const auto row_gradients = G == 2 ? min_row_gradients<2> : min_row_gradients<3>;
        row_gradients(a, s, b0 + r, pre + static_cast<size_t>(r) * RH, dz, dbp,
                      dh + static_cast<size_t>(r) * H, dh0 + static_cast<size_t>(r) * H);
        for (int gi = 0; gi < groups; ++gi) {
          float* dst = zp + (static_cast<size_t>(gi) * KB + kb + r) * GW;
          const int n = std::min(GW, K - gi * GW);
          std::memcpy(dst, dz + gi * GW, sizeof(float) * n);
          std::fill(dst + n, dst + GW, 0.0f);
        }
      }
      // This step's rows of dX = dZ W_x^T, batch-major: they are streamed, so their stride
      // costs nothing here, and where rnn()'s inputs are batch-major XLA needs no transpose.
      float* dx = a.dxs + (static_cast<size_t>(b0) * T + t) * I;
      for (int r0 = 0; r0 < rows_own; r0 += MR) {
        const int nrows = std::min(MR, rows_own - r0);
        for (int r = 0; r < MR; ++r)
          rows[r] = zr + static_cast<size_t>(r0 + std::min(r, nrows - 1)) * K;
        for (int p = 0; p < in_panels; p += MAX_NG) {
          const int ng = std::min(MAX_NG, in_panels - p);
          vf acc[MR][MAX_NG];
          matmul_rows(ng, nrows, rows, K, wt + static_cast<size_t>(p) * K * VL, acc);
          store_tile(dx + static_cast<size_t>(r0) * ld_dx, ld_dx, I, nrows, p, ng, acc, true);
        }
      }
      kb += rows_own;
      if (kb < KB && s > 0) continue;
      // dW_x += X^T dZ over the block: X^T read from the block's rows of X, dZ by panel group.
      for (int i0 = 0; i0 < I; i0 += MR) {
        const int nrows = std::min(MR, I - i0);
        for (int gi = 0; gi < groups; ++gi) {
          const int p = gi * MAX_NG, ng = std::min(MAX_NG, k_panels - p);
          vf acc[MR][MAX_NG];
          load_tile(dw + static_cast<size_t>(i0) * K, K, K, nrows, p, ng, acc);
          const float* zg = zp + static_cast<size_t>(gi) * KB * GW;
          matmul_cols(ng, nrows, xb + i0, I, kb, zg, acc, true, GW);
          store_tile(dw + static_cast<size_t>(i0) * K, K, K, nrows, p, ng, acc);
        }
      }
      kb = 0;
    }
    for (int r = 0; r < rows_own; ++r)
      for (int u = 0; u < H; ++u) {
        const size_t at = static_cast<size_t>(r) * H + u;
        a.dh0[static_cast<size_t>(b0 + r) * H + u] = dh[at] + dh0[at];
      }
    _mm_sfence();  // the streamed rows of dX
    barrier.wait();  // every thread's dW_x and db are complete: sum them, each a share
    const size_t total = static_cast<size_t>(I) * K;
    for (size_t e = total * j / threads; e < total * (j + 1) / threads; ++e) {
      float sum = 0.0f;
      for (int q = 0; q < threads; ++q) sum += dw_parts[q][e];
      a.dw_x[e] = sum;
    }
    for (int e = K * j / threads; e < K * (j + 1) / threads; ++e) {
      float sum = 0.0f;
      for (int q = 0; q < threads; ++q) sum += db_parts[q][e];
      a.db[e] = sum;
    }
  });
}

// ---------------------------------------------------------------------------- FFI handlers

using F32 = ffi::Buffer<ffi::F32>;
using Pred = ffi::Buffer<ffi::PRED>;
using Out = ffi::ResultBuffer<ffi::F32>;

ffi::Error check_threads(int32_t threads) {
  if (threads < 1) return ffi::Error::InvalidArgument("threads must be >= 1");
  return ffi::Error::Success();
}

Dims dims_of(const F32& xs, const F32& w_h) {
  auto x = xs.dimensions();
  return Dims{static_cast<int>(x[0]), static_cast<int>(x[1]), static_cast<int>(x[2]),
              static_cast<int>(w_h.dimensions()[0])};
}

ffi::Error LstmForwardImpl(int32_t reverse, int32_t threads, F32 xs, F32 w_x, F32 w_h, F32 b,
                           F32 h0, F32 c0, Pred mask, Pred reset, Out ys, Out h_T, Out c_T,
                           Out acts, Out h_in, Out c_in) {
  if (auto e = check_threads(threads); !e.success()) return e;
  std::lock_guard<std::mutex> lock(kernel_lock);
  ForwardArgs a{dims_of(xs, w_h), reverse != 0, threads, xs.typed_data(), w_x.typed_data(),
                w_h.typed_data(), b.typed_data(), nullptr, h0.typed_data(), c0.typed_data(),
                mask.typed_data(), reset.typed_data(), ys->typed_data(), h_T->typed_data(),
                c_T->typed_data(), acts->typed_data(), h_in->typed_data(), c_in->typed_data(),
                nullptr};
  forward<LstmCell>(a);
  return ffi::Error::Success();
}

ffi::Error GruForwardImpl(int32_t reverse, int32_t threads, F32 xs, F32 w_x, F32 w_h, F32 b,
                          F32 b_h, F32 h0, Pred mask, Pred reset, Out ys, Out h_T, Out acts,
                          Out h_n, Out h_in) {
  if (auto e = check_threads(threads); !e.success()) return e;
  std::lock_guard<std::mutex> lock(kernel_lock);
  ForwardArgs a{dims_of(xs, w_h), reverse != 0, threads, xs.typed_data(), w_x.typed_data(),
                w_h.typed_data(), b.typed_data(), b_h.typed_data(), h0.typed_data(), nullptr,
                mask.typed_data(), reset.typed_data(), ys->typed_data(), h_T->typed_data(),
                nullptr, acts->typed_data(), h_in->typed_data(), nullptr, h_n->typed_data()};
  forward<GruCell>(a);
  return ffi::Error::Success();
}

Dims backward_dims(const F32& dys, const F32& w_h) {
  auto y = dys.dimensions();
  return Dims{static_cast<int>(y[0]), static_cast<int>(y[1]), 0,
              static_cast<int>(w_h.dimensions()[0])};
}

ffi::Error LstmBackwardImpl(int32_t reverse, int32_t threads, F32 w_h, F32 acts, F32 c_in,
                            F32 dys, F32 dh_T, F32 dc_T, Pred mask, Pred reset, Out dz, Out dh0,
                            Out dc0, Out db) {
  if (auto e = check_threads(threads); !e.success()) return e;
  std::lock_guard<std::mutex> lock(kernel_lock);
  BackwardArgs a{backward_dims(dys, w_h), reverse != 0, threads, w_h.typed_data(),
                 acts.typed_data(), nullptr, c_in.typed_data(), nullptr, dys.typed_data(),
                 dh_T.typed_data(), dc_T.typed_data(), mask.typed_data(), reset.typed_data(),
                 dz->typed_data(), nullptr, dh0->typed_data(), dc0->typed_data(),
                 db->typed_data(), nullptr};
  backward<LstmCell>(a);
  return ffi::Error::Success();
}

ffi::Error GruBackwardImpl(int32_t reverse, int32_t threads, F32 w_h, F32 acts, F32 h_n,
                           F32 h_in, F32 dys, F32 dh_T, Pred mask, Pred reset, Out dz, Out dnx,
                           Out dh0, Out db, Out db_h) {
  if (auto e = check_threads(threads); !e.success()) return e;
  std::lock_guard<std::mutex> lock(kernel_lock);
  BackwardArgs a{backward_dims(dys, w_h), reverse != 0, threads, w_h.typed_data(),
                 acts.typed_data(), h_in.typed_data(), nullptr, h_n.typed_data(),
                 dys.typed_data(), dh_T.typed_data(), nullptr, mask.typed_data(),
                 reset.typed_data(), dz->typed_data(), dnx->typed_data(), dh0->typed_data(), nullptr,
                 db->typed_data(), db_h->typed_data()};
  backward<GruCell>(a);
  return ffi::Error::Success();
}

// G from w_x [I, G*H], and S (the gates whose pre-activations are saved) from xw [T, B, S*H].
ffi::Error min_gates(const F32& w_x, const F32& xw, int H, int& G, int& S) {
  G = static_cast<int>(w_x.dimensions()[1]) / H;
  S = static_cast<int>(xw.dimensions()[2]) / H;
  if (G != 2 && G != 3) return ffi::Error::InvalidArgument("w_x must have 2H or 3H columns");
  if (S < 1 || S > G) return ffi::Error::InvalidArgument("xw must have H to G*H columns");
  return ffi::Error::Success();
}

ffi::Error MinForwardImpl(int32_t reverse, int32_t threads, F32 xs, F32 w_x, F32 b, F32 h0,
                          Pred mask, Pred reset, Out hs, Out xw) {
  if (auto e = check_threads(threads); !e.success()) return e;
  auto x = xs.dimensions();  // [B, T, I]
  const int H = static_cast<int>(h0.dimensions()[1]);
  int G, S;
  if (auto e = min_gates(w_x, *xw, H, G, S); !e.success()) return e;
  std::lock_guard<std::mutex> lock(kernel_lock);
  MinForwardArgs a{Dims{static_cast<int>(x[1]), static_cast<int>(x[0]), static_cast<int>(x[2]), H},
                   reverse != 0, threads, G, S, xs.typed_data(), w_x.typed_data(), b.typed_data(),
                   h0.typed_data(), mask.typed_data(), reset.typed_data(), hs->typed_data(),
                   xw->typed_data()};
  min_forward(a);
  return ffi::Error::Success();
}

ffi::Error MinBackwardImpl(int32_t reverse, int32_t threads, F32 xs,
                           F32 w_x, F32 b, F32 xw, F32 hs, F32 h0, F32 dhs, Pred mask,
                           Pred reset, Out dxs, Out dw_x, Out db, Out dh0) {
  if (auto e = check_threads(threads); !e.success()) return e;
  auto x = xs.dimensions();  // [B, T, I]
  const int H = static_cast<int>(h0.dimensions()[1]);
  int G, S;
  if (auto e = min_gates(w_x, xw, H, G, S); !e.success()) return e;
  std::lock_guard<std::mutex> lock(kernel_lock);
  MinBackwardArgs a{Dims{static_cast<int>(x[1]), static_cast<int>(x[0]), static_cast<int>(x[2]), H},
                    reverse != 0, threads, G, S, xs.typed_data(), w_x.typed_data(),
                    b.typed_data(), xw.typed_data(), hs.typed_data(), h0.typed_data(),
                    dhs.typed_data(), mask.typed_data(), reset.typed_data(), dxs->typed_data(),
                    dw_x->typed_data(), db->typed_data(), dh0->typed_data()};
  min_backward(a);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(SeqjaxLstmForward, LstmForwardImpl,
                              ffi::Ffi::Bind()
                                  .Attr<int32_t>("reverse")
                                  .Attr<int32_t>("threads")
                                  .Arg<F32>()  // xs [T, B, I]
                                  .Arg<F32>()  // w_x [I, 4H]
                                  .Arg<F32>()  // w_h [H, 4H]
                                  .Arg<F32>()  // b [4H]
                                  .Arg<F32>()  // h0 [B, H]
                                  .Arg<F32>()  // c0 [B, H]
                                  .Arg<Pred>()  // mask [T, B]
                                  .Arg<Pred>()  // reset [T, B]
                                  .Ret<F32>()  // ys [T, B, H]
                                  .Ret<F32>()  // h_T [B, H]
                                  .Ret<F32>()  // c_T [B, H]
                                  .Ret<F32>()  // acts [T, B, 4H]
                                  .Ret<F32>()  // h_in [T, B, H]
                                  .Ret<F32>());  // c_in [T, B, H]

XLA_FFI_DEFINE_HANDLER_SYMBOL(SeqjaxGruForward, GruForwardImpl,
                              ffi::Ffi::Bind()
                                  .Attr<int32_t>("reverse")
                                  .Attr<int32_t>("threads")
                                  .Arg<F32>()  // xs [T, B, I]
                                  .Arg<F32>()  // w_x [I, 3H]
                                  .Arg<F32>()  // w_h [H, 3H]
                                  .Arg<F32>()  // b [3H]
                                  .Arg<F32>()  // b_h [3H]
                                  .Arg<F32>()  // h0 [B, H]
                                  .Arg<Pred>()  // mask [T, B]
                                  .Arg<Pred>()  // reset [T, B]
                                  .Ret<F32>()  // ys [T, B, H]
                                  .Ret<F32>()  // h_T [B, H]
                                  .Ret<F32>()  // acts [T, B, 3H]: r, z, n
                                  .Ret<F32>()  // h_n [T, B, H]: h W_hn + b_hn
                                  .Ret<F32>());  // h_in [T, B, H]

XLA_FFI_DEFINE_HANDLER_SYMBOL(SeqjaxLstmBackward, LstmBackwardImpl,
                              ffi::Ffi::Bind()
                                  .Attr<int32_t>("reverse")
                                  .Attr<int32_t>("threads")
                                  .Arg<F32>()  // w_h [H, 4H]
                                  .Arg<F32>()  // acts [T, B, 4H]
                                  .Arg<F32>()  // c_in [T, B, H]
                                  .Arg<F32>()  // d ys [T, B, H]
                                  .Arg<F32>()  // d h_T [B, H]
                                  .Arg<F32>()  // d c_T [B, H]
                                  .Arg<Pred>()  // mask [T, B]
                                  .Arg<Pred>()  // reset [T, B]
                                  .Ret<F32>()  // dZ [T, B, 4H]
                                  .Ret<F32>()  // d h0 [B, H]
                                  .Ret<F32>()  // d c0 [B, H]
                                  .Ret<F32>());  // d b [4H]

XLA_FFI_DEFINE_HANDLER_SYMBOL(SeqjaxGruBackward, GruBackwardImpl,
                              ffi::Ffi::Bind()
                                  .Attr<int32_t>("reverse")
                                  .Attr<int32_t>("threads")
                                  .Arg<F32>()  // w_h [H, 3H]
                                  .Arg<F32>()  // acts [T, B, 3H]
                                  .Arg<F32>()  // h_n [T, B, H]
                                  .Arg<F32>()  // h_in [T, B, H]
                                  .Arg<F32>()  // d ys [T, B, H]
                                  .Arg<F32>()  // d h_T [B, H]
                                  .Arg<Pred>()  // mask [T, B]
                                  .Arg<Pred>()  // reset [T, B]
                                  .Ret<F32>()  // dZh [T, B, 3H]: dr, dz, dn * r
                                  .Ret<F32>()  // dn * (1 - r) [T, B, H]
                                  .Ret<F32>()  // d h0 [B, H]
                                  .Ret<F32>()  // d b [3H]
                                  .Ret<F32>());  // d b_h [3H]

XLA_FFI_DEFINE_HANDLER_SYMBOL(SeqjaxMinForward, MinForwardImpl,
                              ffi::Ffi::Bind()
                                  .Attr<int32_t>("reverse")
                                  .Attr<int32_t>("threads")
                                  .Arg<F32>()  // xs [B, T, I]: batch-major
                                  .Arg<F32>()  // w_x [I, G*H]
                                  .Arg<F32>()  // b [G*H]
                                  .Arg<F32>()  // h0 [B, H]
                                  .Arg<Pred>()  // mask [T, B]
                                  .Arg<Pred>()  // reset [T, B]
                                  .Ret<F32>()  // hs [T, B, H]: the state after each step
                                  .Ret<F32>());  // xw [T, B, S*H]: x W + b, last S gates

XLA_FFI_DEFINE_HANDLER_SYMBOL(SeqjaxMinBackward, MinBackwardImpl,
                              ffi::Ffi::Bind()
                                  .Attr<int32_t>("reverse")
                                  .Attr<int32_t>("threads")
                                  .Arg<F32>()  // xs [B, T, I]: batch-major
                                  .Arg<F32>()  // w_x [I, G*H]
                                  .Arg<F32>()  // b [G*H]
                                  .Arg<F32>()  // xw [T, B, S*H]: x W + b, last S gates
                                  .Arg<F32>()  // hs [T, B, H]
                                  .Arg<F32>()  // h0 [B, H]
                                  .Arg<F32>()  // d hs [T, B, H]
                                  .Arg<Pred>()  // mask [T, B]
                                  .Arg<Pred>()  // reset [T, B]
                                  .Ret<F32>()  // d xs [B, T, I]: batch-major
                                  .Ret<F32>()  // d w_x [I, G*H]
                                  .Ret<F32>()  // d b [G*H]
                                  .Ret<F32>());  // d h0 [B, H]

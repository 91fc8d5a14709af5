"""What the custom-VJP backends (``fused``, ``native``, ``sequential``) share.

Their backward passes compute the weight and input gradients as big matmuls over all steps
(:func:`outer_sum`, :func:`mm_t`), return them in the params' dtypes (:func:`grads_like`), and
are not themselves differentiable: :func:`first_order_only` makes a second-order gradient raise
``NotImplementedError`` with :data:`SECOND_ORDER_ERROR`, never a silently wrong value.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from seqjax.types import Array

SECOND_ORDER_ERROR = (
    "backends 'fused', 'native' and 'sequential' do not support second-order gradients (their "
    "custom VJP backward passes are not differentiable); use backend='reference' or 'hoisted' "
    "for Hessians or grad-of-grad"
)


@jax.custom_jvp
def first_order_only(tree: Any) -> Any:
    """Identity; differentiating through it (i.e. through a custom backward pass) raises."""
    return tree


@first_order_only.defjvp
def _first_order_only_jvp(primals, tangents):
    raise NotImplementedError(SECOND_ORDER_ERROR)


def mm_t(a: Array, w: Array) -> Array:
    """``a @ w.T`` without materialising the transpose."""
    return lax.dot_general(a, w.astype(a.dtype), (((a.ndim - 1,), (1,)), ((), ())))


def outer_sum(a: Array, d: Array, dtype) -> Array:
    """``sum_{t,b} a[t,b]^T d[t,b]``: one [K, T*B] @ [T*B, N] matmul."""
    a2 = a.reshape(-1, a.shape[-1])
    d2 = d.reshape(-1, d.shape[-1]).astype(a.dtype)
    out = lax.dot_general(a2, d2, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)
    return out.astype(dtype)


def grads_like(params, grads: dict[str, Array]):
    """``params`` with each field named in ``grads`` replaced by its gradient, in that field's
    dtype."""
    return params._replace(
        **{name: g.astype(getattr(params, name).dtype) for name, g in grads.items()}
    )

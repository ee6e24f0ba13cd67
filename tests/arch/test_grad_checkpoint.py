"""Gradient checkpointing per decoder level: equal gradients, less kept for backward."""
from __future__ import annotations

import torch

import gpen_core as g
from helpers import TINY


def forward_backward(model, x, grad_checkpoint):
    model.zero_grad(set_to_none=True)
    saved = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x, grad_checkpoint=grad_checkpoint)
    out.square().mean().backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    return out.detach(), grads, sum(saved.values())


def test_checkpointed_gradients_equal_and_memory_lower(tiny_state):
    model = g.build_model(tiny_state).requires_grad_(True)
    x = g.seeded_input(TINY.size, 5, batch=2)
    out, grads, kept = forward_backward(model, x, grad_checkpoint=False)
    out_ck, grads_ck, kept_ck = forward_backward(model, x, grad_checkpoint=True)
    assert torch.equal(out, out_ck)
    assert grads.keys() == grads_ck.keys() and len(grads) > 90
    for key in grads:
        assert torch.allclose(grads[key], grads_ck[key], atol=1e-6, rtol=1e-5), key
    assert any(float(v.abs().max()) > 0 for v in grads.values())
    assert kept_ck < 0.6 * kept

"""MS-QKFormer against an independent functional PyTorch model written from the spec.

There is no reference fixture for MS-QKFormer (successors/maxformer.md, section
4). This test re-computes the spec's equations (4.1 stem, 4.2 Q-K token
attention, 4.3 stage embedding, 3.3 SSA, 3.4 MLP, section 2 head) with plain
`torch.nn.functional` calls on the Keras model's own weights, in float64, and
checks the Keras model's spikes and logits. Every building block it shares
with Max-Former is exact on that family's reference fixture on all backends;
this checks MS-QKFormer's wiring, so it runs once.
"""

import numpy as np
import pytest
from keras import ops

from keras_spikformer import record_spikes
from keras_spikformer.convert import ms_qkformer_weights
from keras_spikformer.models.maxformer import MSQKFormer, MSQKFormerBackbone

torch = pytest.importorskip("torch")
F = torch.nn.functional
pytestmark = pytest.mark.backend_independent


def lif(x, threshold=1.0):
    """SpikingJelly's multi-step LIF (tau 2, hard reset to 0) over axis 0."""
    v, out = torch.zeros_like(x[0]), []
    for x_t in x:
        h = v + (x_t - v) / 2
        s = (h >= threshold).to(x.dtype)
        v = h * (1 - s)
        out.append(s)
    return torch.stack(out)


class Spec:
    """The spec's MS-QKFormer forward on `[T, B, C, H, W]` tensors, eval mode."""

    def __init__(self, weights, heads, record):
        self.w, self.heads, self.record = weights, heads, record

    def fire(self, name, x, threshold=1.0):
        s = lif(x, threshold)
        self.record[name] = s
        return s

    def bn(self, name, x):
        w = self.w
        shape = (1, -1) + (1,) * (x.dim() - 2)
        mean, var = (
            w[f"{name}.running_mean"].view(shape),
            w[f"{name}.running_var"].view(shape),
        )
        gamma, beta = w[f"{name}.weight"].view(shape), w[f"{name}.bias"].view(shape)
        return (x - mean) / torch.sqrt(var + 1e-5) * gamma + beta

    def conv_bn(self, conv, bn, x, stride=1, pool=False):
        """Conv2d (padding k//2) + BN on `[T, B, ...]`, optionally max-pooled."""
        t = x.shape[0]
        weight = self.w[f"{conv}.weight"]
        y = F.conv2d(
            x.flatten(0, 1),
            weight,
            self.w.get(f"{conv}.bias"),
            stride,
            weight.shape[-1] // 2,
        )
        y = self.bn(bn, y)
        if pool:
            y = F.max_pool2d(y, 3, 2, 1)
        return y.view(t, -1, *y.shape[1:])

    def dense_bn(self, name, x):
        """Conv1d(k=1) + BN1d on `[T, B, C, N]`."""
        t = x.shape[0]
        y = F.conv1d(
            x.flatten(0, 1),
            self.w[f"{name}_conv.weight"],
            self.w.get(f"{name}_conv.bias"),
        )
        return self.bn(f"{name}_bn", y).view(t, -1, *y.shape[1:])

    def stem(self, x):
        p = "patch_embed1."
        a = self.conv_bn(p + "proj_conv", p + "proj_bn", x, pool=True)
        s1 = self.fire(p + "proj_lif1", a)
        a = self.conv_bn(p + "proj_conv1", p + "proj_bn1", s1, pool=True)
        s2 = self.fire(p + "proj_lif2", a)
        main = self.conv_bn(p + "proj_conv2", p + "proj_bn2", s2)
        return main + self.conv_bn(p + "rpe_conv", p + "rpe_bn", s1, stride=2)

    def embed(self, p, u):
        s = self.fire(p + "init_lif", u)
        a = self.fire(
            p + "proj3_lif",
            self.conv_bn(p + "proj3_conv", p + "proj3_bn", s, pool=True),
        )
        main = self.conv_bn(p + "proj4_conv", p + "proj4_bn", a)
        return main + self.conv_bn(p + "proj_res_conv", p + "proj_res_bn", s, stride=2)

    def qka(self, p, u):
        t, b, c, h, w = u.shape
        x = self.fire(p + "proj_lif", u).flatten(3)
        q = self.fire(p + "q_lif", self.dense_bn(p + "q", x))
        k = self.fire(p + "k_lif", self.dense_bn(p + "k", x))
        q = q.view(t, b, self.heads, c // self.heads, h * w)
        mask = self.fire(p + "attn_lif", q.sum(3, keepdim=True), 0.5)
        y = (mask * k.view(t, b, self.heads, c // self.heads, h * w)).view(
            t, b, c, h * w
        )
        return u + self.dense_bn(p + "proj", y).view(t, b, c, h, w)

    def ssa(self, p, u):
        t, b, c, h, w = u.shape
        x = self.fire(p + "x_lif", u).flatten(3)
        qkv = [self.fire(p + f"{n}_lif", self.dense_bn(p + n, x)) for n in "qkv"]
        q, k, v = (
            z.transpose(2, 3).reshape(t, b, h * w, self.heads, -1).transpose(2, 3)
            for z in qkv
        )
        a = q @ (k.transpose(-2, -1) @ v) * 0.125
        y = self.fire(p + "attn_lif", a.transpose(3, 4).reshape(t, b, c, h * w), 0.5)
        return u + self.dense_bn(p + "proj", y).view(t, b, c, h, w)

    def mlp(self, p, u):
        z = self.conv_bn(p + "fc1_conv", p + "fc1_bn", self.fire(p + "fc1_lif", u))
        return u + self.conv_bn(
            p + "fc2_conv", p + "fc2_bn", self.fire(p + "fc2_lif", z)
        )

    def __call__(self, images, num_timesteps, depths):
        u = self.stem(images.unsqueeze(0).repeat(num_timesteps, 1, 1, 1, 1))
        for s, depth in enumerate(depths, start=1):
            if s > 1:
                u = self.embed(f"patch_embed{s}.", u)
            for j in range(depth):
                mixer = self.ssa if s == 3 else self.qka
                u = self.mlp(f"stage{s}.{j}.mlp.", mixer(f"stage{s}.{j}.attn.", u))
        spikes = self.fire("head_lif", u.flatten(3).mean(3))
        return F.linear(spikes, self.w["head.weight"], self.w["head.bias"]).mean(0)


def to_torch_layout(name, value):
    if value.ndim == 4:
        return value.transpose(3, 2, 0, 1)  # HWIO -> OIHW
    if value.ndim == 2:  # Dense [I, O] -> Conv1d [O, I, 1], 1x1 Conv2d, Linear
        out = value.T
        if ".mlp." in name:
            return out[:, :, None, None]
        return out if name.startswith("head") else out[:, :, None]
    return value


def test_keras_ms_qkformer_matches_the_spec_equations():
    depths = (1, 2, 1)
    backbone = MSQKFormerBackbone(
        image_shape=(32, 32, 3), hidden_dim=64, stage_depths=depths, num_heads=2,
        num_timesteps=2,
    )  # fmt: skip
    model = MSQKFormer(backbone, num_classes=10)
    rng = np.random.default_rng(3)
    images = rng.normal(size=(2, 32, 32, 3)).astype("float32")
    variables = ms_qkformer_weights.reference_variable_map(model)
    # Batch statistics of these images as running statistics, then BN affines
    # that make every neuron fire at a healthy rate.
    for layer in model._flatten_layers():
        if hasattr(layer, "moving_mean"):
            layer.momentum = 0.0
    model(images, training=True)
    for name, variable in variables.items():
        if name.endswith("_bn.weight"):
            variable.assign(rng.uniform(0.6, 1.4, variable.shape))
        elif name.endswith("_bn.bias"):
            # Token-attention gates fire when any Q channel of a head does.
            mean = -0.5 if ".attn.q_bn" in name and name < "stage3" else 0.5
            variable.assign(rng.normal(mean, 0.5, variable.shape))
    modules = ms_qkformer_weights.reference_module_map(model)
    with record_spikes() as record:
        logits = ops.convert_to_numpy(model(images, training=False))

    weights = {
        k: torch.from_numpy(
            to_torch_layout(k, ops.convert_to_numpy(v)).astype("float64")
        )
        for k, v in variables.items()
    }
    spec_spikes = {}
    spec = Spec(weights, heads=2, record=spec_spikes)
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).astype("float64"))
    expected = spec(x, 2, depths).numpy()

    assert len(spec_spikes) == 2 + 3 * 6 + 2 * 2 + 7 + 1  # every neuron of the spec
    for name, reference in spec_spikes.items():
        ours = np.swapaxes(ops.convert_to_numpy(record.last(modules[name])), 0, 1)
        if name.startswith(("stage1", "stage2")) and name.endswith("attn_lif"):
            ours = ours.reshape(ours.shape[0], ours.shape[1], -1, 2).transpose(
                0, 1, 3, 2
            )[:, :, :, None]
        elif ours.ndim == 5:
            ours = ours.transpose(0, 1, 4, 2, 3).reshape(reference.shape)
        elif ours.ndim == 4:
            ours = ours.transpose(0, 1, 3, 2).reshape(reference.shape)
        reference = reference.numpy()
        rate = reference.mean()
        assert 0.005 < rate < 0.995, (
            f"{name}: rate {rate} (the test needs firing neurons)"
        )
        flips = np.mean(ours.reshape(reference.shape) != reference)
        assert flips <= 1e-3, f"{name}: {flips:.2%} of the spikes differ from the spec"
    np.testing.assert_allclose(logits, expected, rtol=0, atol=2e-3)

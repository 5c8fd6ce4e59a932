"""DessiLBI: the invariants of ALGORITHMS.md A13 and equivalence with a plain A3 loop."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grownet.errors import UserError
from grownet.optim import (
    DessiLBI,
    lam_for_entry,
    layer_lams,
    lbi_param_groups,
    nu_for_entry,
    typical_filter_norm,
)


@pytest.fixture(params=[True, False], ids=["fused", "foreach"])
def fused(request, monkeypatch):
    """Run a test through torch's fused SGD kernel and through the plain foreach path."""
    monkeypatch.setattr(DessiLBI, "_use_fused", request.param)
    return request.param


class SmallCNN(nn.Module):
    """conv + BN + conv + hidden linear + classifier; layer names as in grownet models."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3)
        self.c1_bn = nn.BatchNorm2d(4)
        self.c2 = nn.Conv2d(4, 6, 3, bias=False)
        self.fc = nn.Linear(6 * 4 * 4, 8)
        self.out = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.c1_bn(self.c1(x)))
        x = F.relu(self.c2(x))
        return self.out(F.relu(self.fc(x.flatten(1))))


def make_cnn(dtype: torch.dtype = torch.float64, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return SmallCNN().to(dtype)


def batches(n: int, dtype: torch.dtype = torch.float64, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(16, 1, 8, 8, generator=gen, dtype=dtype),
            torch.randint(0, 3, (16,), generator=gen),
        )
        for _ in range(n)
    ]


def mixed_groups(model: nn.Module) -> list[dict]:
    """filter (conv, linear rows, a coupled 1-D BN weight), element (conv), none (rest)."""
    named = dict(model.named_parameters())
    spec = {
        "filter": ["c1.weight", "fc.weight", "c1_bn.weight"],
        "element": ["c2.weight"],
    }
    taken = {n for ns in spec.values() for n in ns}
    spec["none"] = [n for n in named if n not in taken]
    return [
        {"params": [named[n] for n in ns], "names": ns, "structure": s} for s, ns in spec.items()
    ]


def train(model, opt, data, **step_kw) -> None:
    for x, y in data:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step(**step_kw)


# -- a straightforward per-tensor implementation of ALGORITHMS A3 -------------------


def prox(v: torch.Tensor, structure: str, lam: float) -> torch.Tensor:
    if v.ndim not in (2, 4):
        return torch.zeros_like(v)
    if structure == "element":
        return torch.sign(v) * torch.clamp(v.abs() - lam, min=0)
    out = torch.zeros_like(v)
    for o in range(v.shape[0]):
        n = v[o].norm()
        if n > lam:
            out[o] = v[o] * (1 - lam / n)
    return out


class ReferenceLBI:
    """ALGORITHMS A3 line by line, one tensor at a time."""

    def __init__(self, groups, lr, kappa, nu, lam, momentum, dampening, nesterov, weight_decay):
        self.groups = groups
        self.h = dict(a=lr, kappa=kappa, nu=nu, lam=lam, m=momentum, dmp=dampening,
                      nesterov=nesterov, wd=weight_decay)  # fmt: skip
        self.state: dict[int, dict] = {}

    @torch.no_grad()
    def step(self) -> None:
        h = self.h
        a, kappa, nu, m = h["a"], h["kappa"], h["nu"], h["m"]
        for group in self.groups:
            for p, name in zip(group["params"], group["names"]):
                if p.grad is None:
                    continue
                g = p.grad.clone()
                st = self.state.setdefault(id(p), {})
                d = g
                if m != 0:
                    if "buf" not in st:
                        st["buf"] = g.clone()
                    else:
                        st["buf"] = m * st["buf"] + (1 - h["dmp"]) * g
                    d = st["buf"]
                decay = h["wd"] != 0 and p.ndim != 1 and "bn" not in name
                if decay:
                    d = d + h["wd"] * p
                    if m != 0:
                        st["buf"] = d
                if h["nesterov"]:
                    d = g + (h["wd"] * p if decay else 0) + m * st["buf"]
                if group["structure"] == "none":
                    p -= a * kappa * d
                    continue
                v = st.setdefault("V", torch.zeros_like(p))
                gam = st.setdefault("gamma", torch.zeros_like(p))
                w_old = p.clone()
                p -= a * kappa * d + (a * kappa / nu) * (p - gam)
                st["V"] = v + (a / nu) * (w_old - gam)
                if p.ndim in (2, 4):
                    st["gamma"] = kappa * prox(st["V"], group["structure"], h["lam"])


HYPER = [
    # momentum, nesterov, weight_decay, dampening
    (0.0, False, 0.0, 0.0),
    (0.9, False, 0.0, 0.0),
    (0.9, True, 0.0, 0.0),
    (0.9, False, 1e-2, 0.0),
    (0.9, True, 1e-2, 0.0),
    (0.5, False, 1e-2, 0.3),
    (0.0, False, 1e-2, 0.0),
]


@pytest.mark.parametrize("momentum,nesterov,wd,dmp", HYPER)
def test_matches_reference_a3_loop(fused, momentum, nesterov, wd, dmp):
    hyper = dict(lr=0.1, kappa=1.5, nu=3.0, lam=0.1, momentum=momentum, dampening=dmp,
                 nesterov=nesterov, weight_decay=wd)  # fmt: skip
    model = make_cnn()
    ref_model = copy.deepcopy(model)
    opt = DessiLBI(mixed_groups(model), **hyper)
    ref = ReferenceLBI(mixed_groups(ref_model), **hyper)
    data = batches(50)
    for x, y in data:
        for mod, o in ((model, opt), (ref_model, ref)):
            for p in mod.parameters():
                p.grad = None
            F.cross_entropy(mod(x), y).backward()
            o.step()
    for (name, p), q in zip(model.named_parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-10, msg=name)
    gammas = []
    for group, rgroup in zip(opt.param_groups, ref.groups):
        for p, q in zip(group["params"], rgroup["params"]):
            st, rst = opt.state[p], ref.state[id(q)]
            if momentum:
                torch.testing.assert_close(st["momentum_buffer"], rst["buf"], rtol=0, atol=1e-10)
            if group["structure"] != "none":
                torch.testing.assert_close(st["V"], rst["V"], rtol=0, atol=1e-10)
                torch.testing.assert_close(st["gamma"], rst["gamma"], rtol=0, atol=1e-10)
                gammas.append(st["gamma"])
    # The comparison covers both sides of the threshold: some groups selected, some not.
    flat = torch.cat([g.flatten() for g in gammas])
    assert (flat != 0).any() and (flat == 0).any()


# -- A13 invariants ---------------------------------------------------------------


def test_a13_1_zero_at_construction():
    model = make_cnn(torch.float32)
    opt = DessiLBI(lbi_param_groups(model), lr=0.1)
    for group in opt.param_groups:
        for p in group["params"]:
            assert p not in opt.state or not opt.state[p]
            if group["structure"] == "none":
                continue
            gam = opt.gamma(p)
            assert gam.shape == p.shape and gam.dtype == p.dtype and gam.device == p.device
            assert torch.count_nonzero(gam) == 0
            assert torch.count_nonzero(opt.w_star(p)) == 0
            assert not opt.support(p).any()


def test_a13_2_first_step(fused):
    model = make_cnn(torch.float32)
    w0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    a, nu = 0.1, 100.0
    opt = DessiLBI(lbi_param_groups(model), lr=a, nu=nu)
    train(model, opt, batches(1, torch.float32))
    coupled = [(n, p) for g in opt.param_groups if g["structure"] != "none"
               for n, p in zip(g["names"], g["params"])]  # fmt: skip
    assert coupled
    for n, p in coupled:
        # V_1 = (a/nu) W_0 exactly, and Γ_1 = 0 since every ||W_0,g|| < lam*nu/a.
        assert torch.equal(opt.state[p]["V"], w0[n] * (a / nu)), n
        assert torch.count_nonzero(opt.gamma(p)) == 0


def test_a13_2_first_step_gamma_is_prox_of_v1():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(5, 3, 2, 2, dtype=torch.float64))
    e = nn.Parameter(torch.randn(4, 6, dtype=torch.float64))
    w0, e0 = w.detach().clone(), e.detach().clone()
    norms = w0.flatten(1).norm(dim=1)
    # a = nu = 1: V_1 = W_0, so the filters with norm above the median enter at once.
    a, nu, lam, kappa = 1.0, 1.0, float(norms.median()), 3.0
    groups = [{"params": [w], "structure": "filter"}, {"params": [e], "structure": "element"}]
    opt = DessiLBI(groups, lr=a, nu=nu, lam=lam, kappa=kappa, momentum=0.0)
    w.grad, e.grad = torch.zeros_like(w), torch.zeros_like(e)
    opt.step()
    torch.testing.assert_close(opt.gamma(w), kappa * prox(w0 * (a / nu), "filter", lam))
    torch.testing.assert_close(opt.gamma(e), kappa * prox(e0 * (a / nu), "element", lam))
    assert torch.equal(opt.support(w), norms > lam)
    assert int(opt.support(w).sum()) == 2


@pytest.mark.parametrize("structure", ["filter", "element"])
def test_a13_3_gamma_is_kappa_prox_of_v(fused, structure):
    model = make_cnn()
    kappa, lam = 2.0, 0.05
    groups = [
        {"params": [model.c1.weight, model.c2.weight, model.fc.weight], "structure": structure},
        {"params": [p for n, p in model.named_parameters()
                    if n not in ("c1.weight", "c2.weight", "fc.weight")], "structure": "none"},
    ]  # fmt: skip
    opt = DessiLBI(groups, lr=0.1, nu=2.0, kappa=kappa, lam=lam)
    train(model, opt, batches(15))
    selected = 0
    for p in groups[0]["params"]:
        v, gam = opt.state[p]["V"], opt.gamma(p)
        if structure == "element":
            torch.testing.assert_close(gam, kappa * torch.nn.functional.softshrink(v, lam))
            assert torch.equal(gam != 0, v.abs() > lam)
            selected += int((gam != 0).sum())
            continue
        vn = v.flatten(1).norm(dim=1)
        nz = gam.flatten(1) != 0
        sel = vn > lam
        assert torch.equal(nz.any(1), sel)
        assert torch.equal(nz.all(1), sel)  # all-zero or all-nonzero filters
        assert torch.count_nonzero(gam[~sel]) == 0  # exact zeros
        scale = (kappa * (1 - lam / vn[sel])).view((-1,) + (1,) * (v.ndim - 1))
        torch.testing.assert_close(gam[sel], scale * v[sel], rtol=1e-12, atol=0)
        assert torch.equal(opt.support(p), sel)
        selected += int(sel.sum())
    assert selected > 0


def test_a13_3_zero_norm_group_gives_zero_not_nan():
    w = nn.Parameter(torch.zeros(3, 2, 2, 2))
    opt = DessiLBI([{"params": [w], "structure": "filter"}], lr=0.1, momentum=0.0)
    w.grad = torch.zeros_like(w)
    opt.step()
    assert torch.equal(opt.gamma(w), torch.zeros_like(w))
    opt0 = DessiLBI([{"params": [w], "structure": "filter"}], lr=0.1, lam=0.0, momentum=0.0)
    opt0.step()
    assert torch.equal(opt0.gamma(w), torch.zeros_like(w))  # lam = 0: Γ = kappa*V = 0


@pytest.mark.parametrize("nesterov", [False, True])
def test_a13_4_no_coupling_is_sgd(fused, nesterov):
    model = make_cnn()
    ref = copy.deepcopy(model)
    a, kappa = 0.05, 2.0
    opt = DessiLBI(lbi_param_groups(model), lr=a, kappa=kappa, nu=1e12, nesterov=nesterov)
    sgd = torch.optim.SGD(ref.parameters(), lr=a * kappa, momentum=0.9, nesterov=nesterov)
    data = batches(10)
    train(model, opt, data)
    train(ref, sgd, data)
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-9)
    for g in opt.param_groups:
        if g["structure"] != "none":
            for p in g["params"]:
                assert torch.count_nonzero(opt.gamma(p)) == 0


def test_a13_5_plain_params_follow_sgd_exactly(fused):
    model = make_cnn()
    ref = copy.deepcopy(model)
    a, kappa, wd = 0.05, 2.0, 1e-2
    groups = mixed_groups(model)
    opt = DessiLBI(groups, lr=a, kappa=kappa, nu=0.5, lam=0.01, weight_decay=wd)
    plain = set(groups[2]["names"])
    ref_named = dict(ref.named_parameters())
    # torch SGD, no decay on 1-D tensors ("bn" names are 1-D here too).
    sgd = torch.optim.SGD(
        [{"params": [ref_named[n] for n in plain if ref_named[n].ndim != 1], "weight_decay": wd},
         {"params": [ref_named[n] for n in plain if ref_named[n].ndim == 1], "weight_decay": 0.0}],
        lr=a * kappa, momentum=0.9,
    )  # fmt: skip
    for x, y in batches(10):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        for n, p in model.named_parameters():  # the same gradients on the reference
            ref_named[n].grad = p.grad.clone()
        opt.step()
        sgd.step()
    for n in plain:
        torch.testing.assert_close(dict(model.named_parameters())[n], ref_named[n],
                                   rtol=1e-13, atol=1e-15, msg=n)  # fmt: skip


def test_a13_6_kappa_does_not_enter_v():
    torch.manual_seed(0)
    w0 = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    v0 = torch.randn_like(w0)
    g0 = torch.randn_like(w0)
    vs = []
    for kappa in (1.0, 3.0):
        w = nn.Parameter(w0.clone())
        opt = DessiLBI([{"params": [w], "structure": "filter"}], lr=0.1, nu=2.0, kappa=kappa)
        # Identical W_k, Γ_k (nonzero) and V_k for both kappas.
        opt.state[w]["V"] = v0.clone()
        opt.state[w]["gamma"] = prox(v0, "filter", 1.0) * 1.7
        opt.state[w]["momentum_buffer"] = g0.clone()
        w.grad = g0.clone()
        opt.step()
        vs.append(opt.state[w]["V"].clone())
    assert torch.equal(vs[0], vs[1])


def quadratic_toy(norms, d=8, dtype=torch.float64):
    """Separable quadratic: W* with rows of the given norms, W_0 = 0."""
    torch.manual_seed(0)
    dirs = torch.randn(len(norms), d, dtype=dtype)
    w_star = dirs / dirs.norm(dim=1, keepdim=True) * torch.tensor(norms, dtype=dtype)[:, None]
    return w_star, nn.Parameter(torch.zeros_like(w_star))


def run_toy(w, w_star, opt, steps, on_step=None):
    for k in range(1, steps + 1):
        w.grad = (w - w_star).detach()  # grad of 1/2 ||W - W*||^2
        opt.step()
        if on_step is not None:
            on_step(k)


def test_a13_7_quadratic_toy_entry_order_and_time(fused):
    norms = [4.0, 2.0, 1.0, 0.5]
    a, nu, lam = 0.1, 100.0, 1.0
    w_star, w = quadratic_toy(norms)
    opt = DessiLBI([{"params": [w], "structure": "filter"}], lr=a, nu=nu, lam=lam, momentum=0.0)
    entry = [-1] * len(norms)
    prev = torch.zeros(len(norms), dtype=torch.bool)

    def record(k):
        nonlocal prev
        sup = opt.support(w)
        assert not (prev & ~sup).any()  # the support never shrinks
        for g in range(len(norms)):
            if sup[g] and entry[g] < 0:
                entry[g] = k
        prev = sup

    run_toy(w, w_star, opt, 2300, record)
    assert all(e > 0 for e in entry)
    assert entry == sorted(entry)  # decreasing ||W*_g|| enters first
    for e, n in zip(entry, norms):
        predicted = lam * nu / (a * n)
        assert abs(e - predicted) <= 0.1 * predicted, (e, predicted)


def test_a13_7_quadratic_toy_converges_without_shrinkage(fused):
    w_star, w = quadratic_toy([3.0, 2.0, 1.5])
    opt = DessiLBI([{"params": [w], "structure": "filter"}], lr=0.1, nu=5.0, momentum=0.0)
    run_toy(w, w_star, opt, 3000)
    gam = opt.gamma(w)
    torch.testing.assert_close(w.detach(), w_star, rtol=0, atol=1e-6)
    torch.testing.assert_close(gam, w_star, rtol=0, atol=1e-6)  # no lasso bias on Γ either


def test_a13_8_w_star_leaves_w_untouched():
    model = make_cnn()
    groups = mixed_groups(model)
    opt = DessiLBI(groups, lr=0.1, nu=2.0, lam=0.05)
    train(model, opt, batches(10))
    for group in groups[:2]:
        for p in group["params"]:
            before = p.detach().clone()
            ws = opt.w_star(p)
            assert torch.equal(p.detach(), before)
            sup = opt.support(p)
            if sup.shape != p.shape:
                sup = sup.view((-1,) + (1,) * (p.ndim - 1)).expand_as(p)
            assert torch.equal(ws, torch.where(sup, before, torch.zeros_like(before)))


# -- freeze mode (A8 / A13 item 10) ---------------------------------------------------


@pytest.mark.parametrize("how", ["step", "group"])
def test_freeze_keeps_selected_groups(how):
    model = make_cnn()
    groups = mixed_groups(model)
    opt = DessiLBI(groups, lr=0.1, nu=2.0, lam=0.05)
    data = batches(12)
    train(model, opt, data[:8])
    coupled = [p for g in opt.param_groups[:2] for p in g["params"] if p.ndim in (2, 4)]
    before = {}
    for p in coupled:
        st = opt.state[p]
        before[p] = (p.detach().clone(), st["V"].clone(), st["gamma"].clone(),
                     st["momentum_buffer"].clone(), opt.support(p))  # fmt: skip
    assert any(b[4].any() for b in before.values())
    if how == "group":
        for g in opt.param_groups:
            g["freeze"] = True
        train(model, opt, data[8:])
    else:
        train(model, opt, data[8:], freeze=True)
    moved_free = 0
    for p, (w0, v0, g0, m0, sel) in before.items():
        st = opt.state[p]
        assert torch.equal(p.detach()[sel], w0[sel])
        assert torch.equal(st["V"][sel], v0[sel])
        assert torch.equal(st["gamma"][sel], g0[sel])
        assert not torch.equal(st["momentum_buffer"], m0)  # momentum still updates
        moved_free += int((p.detach()[~sel] != w0[~sel]).sum())
    assert moved_free > 0


def test_freeze_off_is_the_normal_step():
    model = make_cnn()
    other = copy.deepcopy(model)
    opt = DessiLBI(mixed_groups(model), lr=0.1, nu=2.0, lam=0.05)
    opt2 = DessiLBI(mixed_groups(other), lr=0.1, nu=2.0, lam=0.05)
    data = batches(6)
    train(model, opt, data)
    train(other, opt2, data, freeze=False)
    for p, q in zip(model.parameters(), other.parameters()):
        assert torch.equal(p, q)


# -- checkpoints, schedulers, devices -------------------------------------------------


def test_state_dict_round_trip_is_bit_identical():
    data = batches(20, torch.float32)
    model = make_cnn(torch.float32)
    opt = DessiLBI(mixed_groups(model), lr=0.1, nu=2.0, lam=0.05, weight_decay=1e-3)
    ref_model = copy.deepcopy(model)
    ref_opt = DessiLBI(mixed_groups(ref_model), lr=0.1, nu=2.0, lam=0.05, weight_decay=1e-3)
    train(ref_model, ref_opt, data)

    train(model, opt, data[:10])
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    ck = torch.load(buf, weights_only=True)
    resumed = make_cnn(torch.float32, seed=123)  # different init, overwritten by the checkpoint
    resumed.load_state_dict(ck["model"])
    opt2 = DessiLBI(mixed_groups(resumed), lr=0.5)
    opt2.load_state_dict(ck["opt"])
    assert opt2.param_groups[0]["lr"] == 0.1 and opt2.param_groups[0]["names"][0] == "c1.weight"
    train(resumed, opt2, data[10:])
    for p, q in zip(resumed.parameters(), ref_model.parameters()):
        assert torch.equal(p, q)
    for p, q in zip(resumed.parameters(), ref_model.parameters()):
        for key, val in ref_opt.state[q].items():
            assert torch.equal(opt2.state[p][key], val), key


def test_per_tensor_state_is_param_shaped():
    model = make_cnn(torch.float32)
    opt = DessiLBI(mixed_groups(model), lr=0.1)
    train(model, opt, batches(2, torch.float32))
    for p, st in opt.state.items():
        assert set(st) <= {"momentum_buffer", "V", "gamma"}
        for val in st.values():
            assert val.shape == p.shape and val.dtype == p.dtype


def test_lr_scheduler_drives_the_step():
    w = nn.Parameter(torch.ones(3, 2, dtype=torch.float64))
    b = nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = DessiLBI([{"params": [w], "structure": "element"}, {"params": [b], "structure": "none"}],
                   lr=0.1, nu=10.0, momentum=0.0)  # fmt: skip
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.1)
    w.grad, b.grad = torch.zeros_like(w), torch.ones_like(b)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)
    v1, b1 = opt.state[w]["V"].clone(), b.detach().clone()
    opt.step()
    torch.testing.assert_close(b.detach(), b1 - 0.01)  # plain: p -= lr*kappa*g
    # V += (lr/nu) (W_k - Γ_k) with the scheduled lr.
    torch.testing.assert_close(opt.state[w]["V"] - v1, (0.01 / 10.0) * (w.detach() / (1 - 0.001)))


def test_params_without_grad_are_skipped():
    model = make_cnn()
    for p in model.fc.parameters():
        p.requires_grad_(False)
    opt = DessiLBI(lbi_param_groups(model), lr=0.1)
    before = model.fc.weight.detach().clone()
    train(model, opt, batches(3))
    assert model.fc.weight not in opt.state or not opt.state[model.fc.weight]
    assert torch.equal(model.fc.weight, before)
    assert torch.count_nonzero(opt.gamma(model.fc.weight)) == 0
    assert "V" in opt.state[model.c1.weight]


def test_bf16_autocast_forward(fused):
    model = make_cnn(torch.float32)
    opt = DessiLBI(lbi_param_groups(model), lr=0.1, nu=100.0)
    w0 = model.c1.weight.detach().clone()
    b0 = model.out.bias.detach().clone()
    x, y = batches(1, torch.float32)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    g = model.out.bias.grad.clone()
    opt.step()
    assert math.isfinite(loss.item())
    for p, st in opt.state.items():
        assert p.dtype == torch.float32 and all(v.dtype == torch.float32 for v in st.values())
    assert torch.equal(opt.state[model.c1.weight]["V"], w0 * (0.1 / 100.0))
    torch.testing.assert_close(model.out.bias.detach(), b0 - 0.1 * g)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    model = make_cnn(torch.float32)
    gpu = copy.deepcopy(model).cuda()
    opt = DessiLBI(mixed_groups(model), lr=0.1, nu=2.0, lam=0.05, weight_decay=1e-3)
    opt_g = DessiLBI(mixed_groups(gpu), lr=0.1, nu=2.0, lam=0.05, weight_decay=1e-3)
    data = batches(10, torch.float32)
    train(model, opt, data)
    train(gpu, opt_g, [(x.cuda(), y.cuda()) for x, y in data])
    for p, q in zip(model.parameters(), gpu.parameters()):
        torch.testing.assert_close(p, q.cpu(), rtol=1e-4, atol=1e-5)
    assert opt_g.gamma(gpu.c1.weight).device.type == "cuda"


# -- groups, names, errors ----------------------------------------------------------------


def test_lbi_param_groups_rule():
    model = make_cnn(torch.float32)
    groups = lbi_param_groups(model)
    by = {g["structure"]: g for g in groups}
    assert [g["structure"] for g in groups] == ["filter", "none"]
    assert by["filter"]["names"] == ["c1.weight", "c2.weight", "fc.weight"]
    assert "out.weight" in by["none"]["names"] and "c1_bn.weight" in by["none"]["names"]
    assert all(p is dict(model.named_parameters())[n]
               for g in groups for n, p in zip(g["names"], g["params"]))  # fmt: skip
    n_params = sum(len(g["params"]) for g in groups)
    assert n_params == len(list(model.parameters()))

    model.classifier_name = "fc"  # the named module is the classifier, "out" becomes hidden
    by = {g["structure"]: g for g in lbi_param_groups(model)}
    assert "fc.weight" in by["none"]["names"] and "out.weight" in by["filter"]["names"]
    model.classifier_name = "nope"
    with pytest.raises(UserError, match="classifier_name"):
        lbi_param_groups(model)


def test_lbi_param_groups_element_linear():
    model = make_cnn(torch.float32)
    by = {g["structure"]: g for g in lbi_param_groups(model, hidden_linear="element")}
    assert by["element"]["names"] == ["fc.weight"]
    with pytest.raises(UserError, match="hidden_linear"):
        lbi_param_groups(model, hidden_linear="rows")


def test_plain_tensors_split_by_rank():
    model = make_cnn(torch.float32)
    opt = DessiLBI(model.parameters(), lr=0.1)
    st = {g["structure"]: g["params"] for g in opt.param_groups}
    assert [g["structure"] for g in opt.param_groups] == ["filter", "element", "none"]
    assert all(p.ndim == 4 for p in st["filter"]) and all(p.ndim == 2 for p in st["element"])
    assert all(p.ndim not in (2, 4) for p in st["none"])
    named = DessiLBI(model.named_parameters(), lr=0.1)
    assert named.param_groups[0]["names"] == ["c1.weight", "c2.weight"]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"lr": -1.0}, "lr"),
        ({"lr": 0.1, "nu": 0.0}, "nu"),
        ({"lr": 0.1, "kappa": 0.0}, "kappa"),
        ({"lr": 0.1, "lam": -1.0}, "lam"),
        ({"lr": 0.1, "momentum": 0.0, "nesterov": True}, "Nesterov"),
        ({"lr": float("nan")}, "finite"),
    ],
)
def test_bad_hyperparameters_raise_user_error(kwargs, match):
    with pytest.raises(UserError, match=match):
        DessiLBI([nn.Parameter(torch.ones(2, 2))], **kwargs)


def test_group_errors():
    w = nn.Parameter(torch.ones(2, 2))
    with pytest.raises(UserError, match="unknown structure"):
        DessiLBI([{"params": [w], "structure": "row"}], lr=0.1)
    with pytest.raises(UserError, match="names"):
        DessiLBI([{"params": [w], "names": ["a", "b"], "structure": "filter"}], lr=0.1)
    with pytest.raises(UserError, match="nu"):
        DessiLBI([{"params": [w], "structure": "filter", "nu": -1.0}], lr=0.1)
    # Group values are checked together with the defaults they inherit.
    opt = DessiLBI([{"params": [w], "structure": "filter", "nesterov": True}], lr=0.1)
    assert opt.param_groups[0]["nesterov"] and opt.param_groups[0]["momentum"] == 0.9
    b = nn.Parameter(torch.ones(2))
    opt = DessiLBI([{"params": [w], "structure": "filter"}, {"params": [b], "structure": "none"}],
                   lr=0.1)  # fmt: skip
    with pytest.raises(UserError, match="no Γ"):
        opt.gamma(b)
    with pytest.raises(UserError, match="not one of"):
        opt.gamma(nn.Parameter(torch.ones(2, 2)))


# -- pacing -----------------------------------------------------------------------------


def test_nu_for_entry_paces_the_toy():
    a, spe = 0.1, 50
    nu = nu_for_entry(target_epoch=4, steps_per_epoch=spe, lr=a, typical_norm=2.0, lam=1.0)
    assert nu == pytest.approx(a * 2.0 * 4 * spe)
    w_star, w = quadratic_toy([2.0])
    opt = DessiLBI([{"params": [w], "structure": "filter"}], lr=a, nu=nu, momentum=0.0)
    entered = []
    run_toy(w, w_star, opt, 6 * spe,
            lambda k: entered.append(k) if opt.support(w)[0] and not entered else None)  # fmt: skip
    assert abs(entered[0] - 4 * spe) <= 0.1 * 4 * spe
    with pytest.raises(UserError, match="steps_per_epoch"):
        nu_for_entry(1, 0, 0.1)


def test_lam_for_entry_paces_the_toy_at_fixed_nu():
    a, spe, nu = 0.1, 50, 100.0
    lam = lam_for_entry(target_epoch=3, steps_per_epoch=spe, lr=a, nu=nu, typical_norm=2.0)
    assert lam == pytest.approx(a * 2.0 * 3 * spe / nu)
    # Consistent with nu_for_entry: either one solves k* = lam*nu/(a*||W||) = 3*spe.
    assert nu_for_entry(3, spe, a, typical_norm=2.0, lam=lam) == pytest.approx(nu)
    w_star, w = quadratic_toy([2.0])
    opt = DessiLBI([{"params": [w], "structure": "filter"}], lr=a, nu=nu, lam=lam, momentum=0.0)
    entered = []
    run_toy(w, w_star, opt, 5 * spe,
            lambda k: entered.append(k) if opt.support(w)[0] and not entered else None)  # fmt: skip
    assert abs(entered[0] - 3 * spe) <= 0.1 * 3 * spe
    with pytest.raises(UserError, match="nu"):
        lam_for_entry(1, 10, 0.1, nu=0.0)


def test_typical_filter_norm_is_median_row_norm():
    model = make_cnn(torch.float32)
    rows = torch.cat([p.detach().flatten(1).norm(dim=1)
                      for p in (model.c1.weight, model.c2.weight, model.fc.weight)])  # fmt: skip
    assert typical_filter_norm(model) == pytest.approx(float(rows.median()))
    with pytest.raises(UserError, match="no conv"):
        typical_filter_norm(nn.Sequential(nn.Linear(3, 2)))


class _TwoScales(nn.Module):
    """A conv with filters of norm ~3 and a hidden linear layer with rows of norm ~0.1
    (LeNet-5's linear rows start near there), then a classifier."""

    classifier_name = "head"

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(2, 5, 3, bias=False)
        self.hidden = nn.Linear(6, 7, bias=False)
        self.head = nn.Linear(7, 2)
        with torch.no_grad():
            for layer, norm in ((self.conv, 3.0), (self.hidden, 0.1)):
                w = layer.weight.double()
                rows = w.flatten(1).norm(dim=1)
                # distinct row norms spread +-20 % around `norm`: an exact median row
                scale = norm * torch.linspace(0.8, 1.2, w.shape[0], dtype=w.dtype)
                layer.weight.copy_(w / rows.view(-1, *[1] * (w.ndim - 1))
                                   * scale.view(-1, *[1] * (w.ndim - 1)))
        self.double()


@pytest.mark.parametrize("pace", ["layer", "unit"])
def test_layer_pacing_enters_each_layers_typical_filter_at_the_target(pace):
    """A13.7's separable quadratic from W_0 = W* (so the norms stay the initial ones):
    with one λ per layer, the median filter of a layer of norm n enters at the target
    step within 10 %, whatever n; one λ for a filter of norm 1 makes the small layer
    enter ~10x later and the large one ~3x earlier."""
    model = _TwoScales()
    a, spe, epochs = 0.1, 40, 3.0
    opt = DessiLBI.for_model(model, spe, lr=a, entry_epochs=epochs, nu=100.0, pace=pace,
                             momentum=0.0)
    coupled = {"conv": model.conv.weight, "hidden": model.hidden.weight}
    targets = {k: w.detach().clone() for k, w in coupled.items()}
    entered = {k: None for k in coupled}
    target_step = epochs * spe
    for k in range(1, int(12 * target_step)):
        for name, w in coupled.items():
            w.grad = w.detach() - targets[name]  # 1/2 ||W - W*||^2, W* = W_0
        opt.step()
        for name, w in coupled.items():
            median_row = w.shape[0] // 2  # row norms ascend: the middle one is the median
            if entered[name] is None and opt.support(w)[median_row]:
                entered[name] = k
        if all(v is not None for v in entered.values()):
            break
    if pace == "layer":
        lams = {g["names"][0]: g["lam"] for g in opt.param_groups if g["structure"] != "none"}
        assert lams["conv.weight"] == pytest.approx(30 * lams["hidden.weight"], rel=1e-6)
        for name, step in entered.items():
            assert abs(step - target_step) <= 0.1 * target_step, (name, step)
    else:
        assert entered["conv"] < target_step / 2
        assert entered["hidden"] is None or entered["hidden"] > 5 * target_step


def test_layer_lams_follow_the_lr_schedule_and_check_groups():
    model = _TwoScales()
    groups = lbi_param_groups(model, per_layer=True)
    assert [g["structure"] for g in groups] == ["filter", "filter", "none"]
    assert [g["names"] for g in groups[:2]] == [["conv.weight"], ["hidden.weight"]]
    layer_lams(groups, path_lr=12.0, nu=100.0)
    median = float(model.hidden.weight.detach().norm(dim=1).median())
    assert groups[1]["lam"] == pytest.approx(median * 12.0 / 100.0)
    assert "lam" not in groups[2]
    element = lbi_param_groups(model, hidden_linear="element", per_layer=True)
    layer_lams(element, path_lr=12.0, nu=100.0)  # element groups: the median |W_ij|
    assert element[1]["lam"] == pytest.approx(
        float(model.hidden.weight.detach().abs().flatten().median()) * 0.12)
    with pytest.raises(UserError, match="per_layer=True"):
        layer_lams(lbi_param_groups(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3),
                                                  nn.Linear(2, 2))), 1.0, 1.0)

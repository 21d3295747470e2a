"""torch's state-dict hooks (``register_state_dict_pre_hook`` / ``_post_hook``,
``register_load_state_dict_pre_hook`` / ``_post_hook``) on every ``ferroptim.torch`` adapter —
the engine's classes, the per-tensor ``Adafactor`` and ``Muon`` and ``LBFGS`` — against
what torch's optimizer of the same name does with the same hooks."""

import copy

import pytest

torch = pytest.importorskip("torch", reason="ferroptim.torch needs PyTorch (pip install ferroptim[torch])")
fot = pytest.importorskip("ferroptim.torch")

ADAPTERS = [name for name in fot.__all__ if name not in ("TorchOptimizer", "adapter")]
OPTIONS = {"SGD": {"momentum": 0.9}, "Momentum": {"lr": 1e-2}}  # state to save; a required lr


def make(owner, name, seed=0):
    """A network, one optimizer of class ``owner.name`` over it, one step taken."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3)).double()
    params = [model[0].weight, model[2].weight] if name == "Muon" else list(model.parameters())
    opt = getattr(owner, name)(params, **OPTIONS.get(name, {}))
    g = torch.Generator().manual_seed(1)
    X, Y = torch.randn(16, 5, generator=g).double(), torch.randn(16, 3, generator=g).double()

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(X), Y)
        loss.backward()
        return loss

    if name == "LBFGS":
        opt.step(closure)
    else:
        closure()
        opt.step()
    return opt


def twins(name):
    """ferroptim.torch's optimizer and, where torch has one of that name, torch's."""
    out = [make(fot, name)]
    if hasattr(torch.optim, name):
        out.append(make(torch.optim, name))
    return out


def save_with_hooks(opt):
    """state_dict() twice under two pre-hooks (one prepended) and two post-hooks (one edits
    the dict in place, one returns a new dict and is removed before the second call)."""
    events = []
    opt.register_state_dict_pre_hook(lambda o: events.append(("pre", o is opt)))
    opt.register_state_dict_pre_hook(lambda o: events.append(("pre, prepended", o is opt)), prepend=True)

    def edit(o, sd):
        events.append(("post", sorted(sd), len(sd["state"]) > 0))
        sd["note"] = "edited in place"

    opt.register_state_dict_post_hook(edit)
    replace = opt.register_state_dict_post_hook(lambda o, sd: {**sd, "replaced": True})
    first = opt.state_dict()
    replace.remove()
    second = opt.state_dict()
    return events, first, second


@pytest.mark.parametrize("name", ADAPTERS)
def test_state_dict_hooks_run_as_torchs(name):
    runs = [save_with_hooks(opt) for opt in twins(name)]
    for events, first, second in runs:
        assert (
            events
            == [
                ("pre, prepended", True),
                ("pre", True),
                ("post", ["param_groups", "state"], True),
            ]
            * 2
        )
        assert first["note"] == "edited in place" and first["replaced"] is True
        assert second["note"] == "edited in place" and "replaced" not in second
    if len(runs) == 2:  # torch's optimizer saw the same calls
        assert runs[0][0] == runs[1][0]


def load_with_hooks(opt, saved):
    """load_state_dict of a checkpoint whose groups are stored under another key: a
    prepended pre-hook renames the key (in the shallow copy it is given), a second one returns
    a new dict with another lr, the post-hook sees the loaded optimizer."""
    events = []
    checkpoint = {"state": saved["state"], "groups saved under another key": saved["param_groups"]}

    def rename(o, sd):
        events.append(("rename", sd is not checkpoint, sorted(sd)))
        sd["param_groups"] = sd.pop("groups saved under another key")

    def new_lr(o, sd):
        events.append(("new lr", sorted(sd)))
        groups = copy.deepcopy(sd["param_groups"])
        groups[0]["lr"] = 0.125
        return {"state": sd["state"], "param_groups": groups}

    opt.register_load_state_dict_pre_hook(new_lr)
    opt.register_load_state_dict_pre_hook(rename, prepend=True)
    opt.register_load_state_dict_post_hook(
        lambda o: events.append(("post", o is opt, o.param_groups[0]["lr"], len(o.state)))
    )
    opt.load_state_dict(checkpoint)
    # the caller's checkpoint is not modified: the hooks got a shallow copy
    assert sorted(checkpoint) == ["groups saved under another key", "state"]
    return events


@pytest.mark.parametrize("name", ADAPTERS)
def test_load_state_dict_hooks_run_as_torchs_and_the_checks_see_what_they_return(name):
    runs = []
    for opt in twins(name):
        saved = copy.deepcopy(opt.state_dict())
        n_state = len(saved["state"])
        assert n_state > 0
        events = load_with_hooks(opt, saved)
        assert events == [
            ("rename", True, ["groups saved under another key", "state"]),
            ("new lr", ["param_groups", "state"]),
            ("post", True, 0.125, n_state),
        ]
        assert opt.param_groups[0]["lr"] == 0.125
        after = opt.state_dict()["state"]
        assert after.keys() == saved["state"].keys()
        for i in after:
            for k, v in saved["state"][i].items():
                if isinstance(v, torch.Tensor):
                    # torch's load casts scalar state (NAdam's mu_product) to the parameter's dtype
                    a, b = (after[i][k].double(), v.double()) if v.dim() == 0 else (after[i][k], v)
                    torch.testing.assert_close(a, b, rtol=0, atol=0)
        runs.append(events)
    if len(runs) == 2:
        assert runs[0] == runs[1]


@pytest.mark.parametrize("name", ADAPTERS)
def test_a_removed_hook_is_not_called_and_a_refused_load_still_runs_the_pre_hooks_only(name):
    (opt, *_) = twins(name)
    events = []
    handle = opt.register_load_state_dict_pre_hook(lambda o, sd: events.append("removed"))
    handle.remove()
    opt.register_load_state_dict_pre_hook(lambda o, sd: events.append("pre"))
    opt.register_load_state_dict_post_hook(lambda o: events.append("post"))
    saved = opt.state_dict()
    before = copy.deepcopy(saved)
    with pytest.raises(ValueError):
        opt.load_state_dict({"state": saved["state"], "param_groups": saved["param_groups"] * 2})
    assert events == ["pre"]  # checked after the pre-hooks, refused before the post-hooks
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]


@pytest.mark.parametrize("name", ADAPTERS)
def test_copying_an_optimizer_runs_no_state_dict_hook(name):
    events = []
    for opt in twins(name):
        opt.register_state_dict_pre_hook(lambda o: events.append("pre"))
        opt.register_state_dict_post_hook(lambda o, sd: events.append("post") or {"broken": True})
        twin = copy.deepcopy(opt)
        assert events == []
        assert twin.param_groups[0]["lr"] == opt.param_groups[0]["lr"]

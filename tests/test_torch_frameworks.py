"""ferroptim.torch where torch users train: a ``torch.compile``d model (the optimizer stays
eager), PyTorch Lightning's ``configure_optimizers``, Hugging Face ``transformers.Trainer``'s
``optimizers=`` argument, torch's gradient clipping before the step and bfloat16 autocast on
the CPU — each against torch's own optimizer in the same place. Tests of a library that is not
installed skip, naming it."""

import copy
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="ferroptim.torch needs PyTorch (pip install ferroptim[torch])")
fot = pytest.importorskip("ferroptim.torch")

F = torch.nn.functional


def network(dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3)).to(dtype)


def data(dtype=torch.float32, n=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g).to(dtype), torch.randn(n, 3, generator=g).to(dtype)


OURS = {"ferroptim.torch": lambda ps: fot.Adam(ps, lr=1e-2)}
THEIRS = {"torch.optim": lambda ps: torch.optim.Adam(ps, lr=1e-2, foreach=False)}


def params_of(model):
    return [p.detach().clone() for p in model.parameters()]


def assert_params_close(ours, theirs, rtol, atol):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(a.float().numpy(), b.float().numpy(), rtol=rtol, atol=atol)


# -- torch.compile ----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_compiled_model_trains_with_ours_as_with_torchs():
    model = network()
    initial = copy.deepcopy(model.state_dict())
    compiled = torch.compile(model)
    X, Y = data()
    try:
        compiled(X)
    except Exception as e:  # torch's compiler, not the optimizer: e.g. no C++ compiler here
        pytest.skip(f"torch.compile does not run here: {type(e).__name__}: {str(e)[:200]}")

    def train(make_opt):
        model.load_state_dict(initial)  # the same compiled model, its parameters reset in place
        opt = make_opt(model.parameters())
        losses = []
        for _ in range(25):
            opt.zero_grad()
            loss = F.mse_loss(compiled(X), Y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return params_of(model), losses

    (ours, our_losses), (theirs, their_losses) = train(OURS["ferroptim.torch"]), train(THEIRS["torch.optim"])
    assert our_losses[-1] < 0.9 * our_losses[0]
    np.testing.assert_allclose(our_losses, their_losses, rtol=2e-5)
    assert_params_close(ours, theirs, 2e-5, 2e-6)


# -- PyTorch Lightning --------------------------------------------------------------------------


# Lightning's own warnings: its pytree helper on torch's deprecated LeafSpec, and its advice
# to use more DataLoader workers
@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")
@pytest.mark.filterwarnings("ignore:.*does not have many workers.*")
def test_lightning_configure_optimizers_returning_ours_trains_as_torchs(tmp_path, monkeypatch):
    pl = pytest.importorskip(
        "lightning.pytorch", reason="PyTorch Lightning is not installed (pip install lightning)"
    )
    monkeypatch.chdir(tmp_path)  # anything Lightning writes by default lands here, and is seen
    X, Y = data(torch.float64)

    class Regressor(pl.LightningModule):
        def __init__(self, make_opt):
            super().__init__()
            self.net = network(torch.float64)
            self.make_opt = make_opt

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.mse_loss(self.net(x), y)

        def configure_optimizers(self):
            opt = self.make_opt(self.parameters())
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def fit(make_opt, root):
        module = Regressor(make_opt)
        trainer = pl.Trainer(
            max_steps=10,
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=str(root),
        )
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=8)
        trainer.fit(module, loader)
        return module, trainer

    ours, trainer = fit(OURS["ferroptim.torch"], tmp_path / "ours")
    theirs, _ = fit(THEIRS["torch.optim"], tmp_path / "theirs")
    assert isinstance(trainer.optimizers[0], fot.Adam)
    assert trainer.global_step == 10
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5**3)
    assert_params_close(params_of(ours), params_of(theirs), 1e-10, 1e-12)
    # Lightning's checkpoint holds our state_dict, which torch's Adam loads
    trainer.save_checkpoint(tmp_path / "ours.ckpt")
    ckpt = torch.load(tmp_path / "ours.ckpt", weights_only=False)
    torch.optim.Adam(copy.deepcopy(ours.net).parameters()).load_state_dict(ckpt["optimizer_states"][0])
    assert sorted(os.listdir(tmp_path)) == ["ours.ckpt"]  # no logs, no checkpoint directories


# -- Hugging Face transformers.Trainer ---------------------------------------------------------


def test_transformers_trainer_with_ours_as_its_optimizer_trains_as_with_torchs(tmp_path):
    transformers = pytest.importorskip(
        "transformers", reason="transformers is not installed (pip install transformers accelerate)"
    )
    pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate (pip install accelerate)")
    X, Y = data(torch.float32)

    class Tiny(torch.nn.Module):
        """A model defined in torch (nothing downloaded), returning the loss as Trainer expects."""

        def __init__(self):
            super().__init__()
            self.net = network(torch.float32)

        def forward(self, x, labels=None):
            out = self.net(x)
            return {"loss": F.mse_loss(out, labels), "logits": out}

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return len(X)

        def __getitem__(self, i):
            return {"x": X[i], "labels": Y[i]}

    def train(make_opt, out):
        model = Tiny()
        opt = make_opt(model.parameters())
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 / (1 + step))
        args = transformers.TrainingArguments(
            output_dir=str(out),
            max_steps=12,
            per_device_train_batch_size=8,
            max_grad_norm=0.5,  # Trainer clips with torch's clip_grad_norm_ before each step
            seed=0,
            use_cpu=True,
            report_to="none",
            save_strategy="no",
            logging_strategy="no",
            dataloader_num_workers=0,
            disable_tqdm=True,
        )
        trainer = transformers.Trainer(model=model, args=args, train_dataset=Pairs(), optimizers=(opt, sched))
        result = trainer.train()
        return model, opt, result

    ours, opt, result = train(OURS["ferroptim.torch"], tmp_path / "ours")
    theirs, _, their_result = train(THEIRS["torch.optim"], tmp_path / "theirs")
    assert result.global_step == 12 and their_result.global_step == 12
    assert opt.state_dict()["state"][0]["step"].item() == 12
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-2 / 13)
    assert result.training_loss == pytest.approx(their_result.training_loss, rel=1e-5)
    assert_params_close(params_of(ours), params_of(theirs), 2e-5, 2e-6)


# -- torch's gradient clipping ---------------------------------------------------------------


CLIPS = {
    "clip_grad_norm_": lambda ps: torch.nn.utils.clip_grad_norm_(ps, max_norm=0.05),
    "clip_grad_norm_ inf": lambda ps: torch.nn.utils.clip_grad_norm_(ps, max_norm=0.02, norm_type="inf"),
    "clip_grad_value_": lambda ps: torch.nn.utils.clip_grad_value_(ps, clip_value=0.01),
}


@pytest.mark.parametrize("clip", list(CLIPS))
def test_torch_gradient_clipping_before_our_step_as_before_torchs(clip):
    X, Y = data(torch.float64)
    runs = []
    for make_opt in (OURS["ferroptim.torch"], THEIRS["torch.optim"]):
        model = network(torch.float64)
        opt = make_opt(model.parameters())
        clipped = 0
        for _ in range(30):
            opt.zero_grad()
            F.mse_loss(model(X), Y).backward()
            before = [p.grad.clone() for p in model.parameters()]
            CLIPS[clip](model.parameters())
            clipped += any(not torch.equal(a, p.grad) for a, p in zip(before, model.parameters()))
            opt.step()
        assert clipped > 0  # the clipping did change the gradients the step read
        runs.append(params_of(model))
    assert_params_close(runs[0], runs[1], 1e-10, 1e-12)


# -- bfloat16 autocast on the CPU ------------------------------------------------------------


def test_bfloat16_autocast_on_cpu_with_float32_parameters_trains_as_torchs():
    X, Y = data(torch.float32)
    runs = []
    for make_opt in (OURS["ferroptim.torch"], THEIRS["torch.optim"]):
        model = network(torch.float32)
        opt = make_opt(model.parameters())
        losses = []
        for _ in range(20):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(X)
                assert out.dtype == torch.bfloat16  # the forward ran in bfloat16
                loss = F.mse_loss(out.float(), Y)
            loss.backward()
            assert all(p.grad.dtype == torch.float32 for p in model.parameters())
            opt.step()
            losses.append(loss.item())
        assert all(p.dtype == torch.float32 for p in model.parameters())
        assert losses[-1] < 0.9 * losses[0]
        runs.append((params_of(model), losses))
    (ours, our_losses), (theirs, their_losses) = runs
    # the same bfloat16 forward of float32 weights that differ by float32 rounding (1e-7 here
    # after 20 steps): a weight a rounding apart may round to the neighbouring bfloat16, so the
    # bound leaves room for a few such flips (2**-8 each) below the steps' size (lr 1e-2)
    np.testing.assert_allclose(our_losses, their_losses, rtol=1e-3)
    assert_params_close(ours, theirs, 1e-3, 1e-4)

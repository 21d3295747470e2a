"""Keeping models (issue 31, item 4): MLP.save / ferroptim.nn.load (safe, atomic, refusing bad
files), EarlyStopping and ModelCheckpoint (Keras' semantics), evaluate, validation_split."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

import ferroptim as fo
from ferroptim.nn import MLP, EarlyStopping, ModelCheckpoint
from ferroptim.schedules import CosineDecay


def _data(m=100, n=3, seed=0, output="softmax"):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, n)).astype(np.float32)
    if output == "identity":
        return X, X[:, :1] * 2 - X[:, 1:2]
    return X, (X[:, 0] + X[:, 1] > 0).astype(np.int64)


def _same_params(a, b):
    assert set(a.params) == set(b.params)
    for k in a.params:
        assert a.params[k].dtype == b.params[k].dtype
        np.testing.assert_array_equal(a.params[k], b.params[k])


# -- save / load -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sizes,hidden,output,dtype",
    [([3, 5, 2], "relu", "softmax", np.float32), ([3, 4, 4, 1], "tanh", "sigmoid", np.float64),
     ([3, 6, 1], "leaky_relu", "identity", np.float32)],
)  # fmt: skip
def test_a_loaded_model_predicts_the_same_and_continues_bit_for_bit(tmp_path, sizes, hidden, output, dtype):
    X, Y = _data(output=output)
    X = X.astype(dtype)
    model = MLP(sizes, hidden=hidden, output=output, dtype=dtype, seed=3, alpha=0.01, init="glorot")
    opt = fo.Adam(model.params, lr=CosineDecay(0.02, decay_steps=40))
    model.fit(X, Y, opt, batch_size=16, epochs=3, max_steps=10)  # stops inside epoch 1
    assert (model.epoch, model.position) == (1, 3)
    path = tmp_path / "model.npz"
    model.save(path, optimizer=opt)
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary file left

    loaded = fo.nn.load(path)
    assert (loaded.layer_sizes, loaded.hidden, loaded.output) == (sizes, hidden, output)
    assert (loaded.dtype, loaded.alpha, loaded.init, loaded.seed) == (np.dtype(dtype), 0.01, "glorot", 3)
    assert (loaded.epoch, loaded.position) == (1, 3)
    _same_params(model, loaded)
    np.testing.assert_array_equal(loaded.forward(X), model.forward(X))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))

    opt2 = fo.Adam(loaded.params, lr=CosineDecay(0.02, decay_steps=40))
    fo.nn.load_optimizer_state(str(path), opt2)
    h1 = model.fit(X, Y, opt, batch_size=16, epochs=2)
    h2 = loaded.fit(X, Y, opt2, batch_size=16, epochs=2)
    np.testing.assert_array_equal(h1.costs, h2.costs)
    _same_params(model, loaded)
    assert (loaded.epoch, loaded.position) == (model.epoch, model.position) == (3, 0)


def test_the_file_is_an_npz_read_without_pickle(tmp_path):
    model = MLP([2, 3, 1], seed=0)
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        header = json.loads(z["__ferroptim__"].tobytes())
        np.testing.assert_array_equal(z["state_dict/params/W1"], model.params["W1"])
    assert header["format"] == "ferroptim.nn.MLP" and header["version"] == 1
    assert header["optimizer"] is None
    with pytest.raises(ValueError, match="holds no optimizer state"):
        fo.nn.load_optimizer_state(tmp_path / "m.npz", fo.Adam(model.params))


def test_a_failed_save_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    MLP([2, 3, 1], seed=0).save(path)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        MLP([2, 3, 1], seed=1).save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.npz"]


def _rewrite_header(src, dst, change):
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays["__ferroptim__"].tobytes())
    change(header)
    arrays["__ferroptim__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(dst, **arrays)


def test_bad_files_are_refused_with_clear_errors(tmp_path):
    good = tmp_path / "good.npz"
    MLP([3, 8, 2], output="softmax", seed=0).save(good)
    data = good.read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated, damaged or another format"):
        fo.nn.load(tmp_path / "truncated.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="not a readable ferroptim model file"):
        fo.nn.load(tmp_path / "text.npz")
    np.savez(tmp_path / "foreign.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="no '__ferroptim__' header"):
        fo.nn.load(tmp_path / "foreign.npz")
    _rewrite_header(good, tmp_path / "other.npz", lambda h: h.update(format="keras"))
    with pytest.raises(ValueError, match="holds 'keras', not a ferroptim.nn.MLP file"):
        fo.nn.load(tmp_path / "other.npz")
    _rewrite_header(good, tmp_path / "newer.npz", lambda h: h.update(version=2))
    with pytest.raises(
        ValueError, match="newer ferroptim .file format version 2; this one reads versions up to 1"
    ):
        fo.nn.load(tmp_path / "newer.npz")
    with pytest.raises(FileNotFoundError):
        fo.nn.load(tmp_path / "missing.npz")
    # a damaged member (its CRC no longer matches) is noticed on loading, not later
    with zipfile.ZipFile(good) as z:
        name = "state_dict/params/W1.npy"
        info = z.getinfo(name)
    damaged = bytearray(data)
    damaged[info.header_offset + 30 + len(name) + 200] ^= 0xFF
    (tmp_path / "damaged.npz").write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match="truncated, damaged or another format"):
        fo.nn.load(tmp_path / "damaged.npz")


# -- EarlyStopping -------------------------------------------------------------------------------


def _run(cb, values, key="val_cost"):
    """Calls cb after each epoch with ``values`` logged; the epoch it stopped after, or None."""
    cb._begin(MLP([1, 1], seed=0))
    for e, v in enumerate(values):
        if cb(e, {"epoch": e, "cost": 1.0, key: v}):
            return e
    return None


def test_early_stopping_follows_keras():
    seq = [1.0, 0.9, 0.95, 0.91, 0.8]
    assert _run(EarlyStopping(patience=2), seq) == 3
    assert _run(EarlyStopping(patience=0), seq) == 2
    assert _run(EarlyStopping(patience=3), seq) is None
    es = EarlyStopping(patience=1, min_delta=0.2)  # 0.9 is not 0.2 better than 1.0
    assert _run(es, seq) == 1 and es.best == 1.0 and es.best_epoch == 0
    es = EarlyStopping(monitor="loss", patience=0)  # Keras' "loss" is our "cost"
    assert _run(es, seq, key="cost") == 2
    es = EarlyStopping(monitor="val_accuracy", patience=0)  # auto: maximised
    assert es.mode == "max" and _run(es, [0.5, 0.6, 0.55], key="val_accuracy") == 2
    assert _run(EarlyStopping(mode="max", patience=0), seq) == 1
    assert _run(EarlyStopping(patience=0, start_from_epoch=3), [1.0, 2.0, 3.0, 0.9, 0.95]) == 4
    # improvements that do not beat the baseline do not reset the patience count
    assert _run(EarlyStopping(patience=1, baseline=0.85), seq) == 2
    # a new fit starts afresh, as Keras' on_train_begin
    es = EarlyStopping(patience=0)
    assert _run(es, seq) == 2 and _run(es, [5.0, 4.0]) is None


def test_early_stopping_in_fit_stops_and_restores_the_best_weights():
    X, y = _data(m=200)
    model = MLP([3, 8, 2], output="softmax", seed=0)
    opt = fo.SGD(model.params, lr=3.0)  # large: the validation cost wanders
    snapshots, vals = {}, {}

    def record(epoch, logs):
        snapshots[epoch] = {k: v.copy() for k, v in model.params.items()}
        vals[epoch] = logs["val_cost"]

    es = EarlyStopping(patience=2, restore_best_weights=True)
    h = model.fit(X, y, opt, batch_size=20, epochs=200, validation_split=0.25, callbacks=[record, es])
    assert es.stopped_epoch > 0 and model.epoch == es.stopped_epoch + 1 == len(h.epochs) < 200
    best = min(vals, key=lambda e: vals[e])
    assert es.best_epoch == best and es.best == vals[best]
    assert es.stopped_epoch == max(e for e in vals if vals[e] <= vals[best]) + 2
    for k in model.params:
        np.testing.assert_array_equal(model.params[k], snapshots[best][k])


def test_early_stopping_without_the_monitored_value_warns():
    X, y = _data()
    model = MLP([3, 4, 2], output="softmax", seed=0)
    with pytest.warns(UserWarning, match="monitors 'val_loss', which fit does not log"):
        h = model.fit(X, y, fo.Adam(model.params), epochs=3, callbacks=[EarlyStopping()])
    assert len(h.epochs) == 3


def test_callback_arguments_are_checked():
    with pytest.raises(ValueError, match="mode must be"):
        EarlyStopping(mode="up")
    with pytest.raises(ValueError, match="patience must be at least 0"):
        EarlyStopping(patience=-1)
    with pytest.raises(TypeError, match="monitor must be a str"):
        ModelCheckpoint("x.npz", monitor=3)
    with pytest.raises(TypeError, match="optimizer must be a ferroptim optimizer"):
        ModelCheckpoint("x.npz", optimizer="adam")


# -- ModelCheckpoint -------------------------------------------------------------------------------


def test_model_checkpoint_saves_each_epoch_with_keras_names(tmp_path):
    X, y = _data()
    model = MLP([3, 4, 2], output="softmax", seed=0)
    opt = fo.Adam(model.params, lr=0.05)
    kept = {}
    ck = ModelCheckpoint(tmp_path / "ck-{epoch:02d}-{val_loss:.4f}.npz", optimizer=opt)
    h = model.fit(
        X, y, opt, batch_size=25, epochs=3, validation_split=0.2,
        callbacks=[ck, lambda e, logs: kept.update({e: {k: v.copy() for k, v in model.params.items()}})],
    )  # fmt: skip
    names = sorted(os.listdir(tmp_path))
    assert names == [f"ck-{e + 1:02d}-{v:.4f}.npz" for e, v in enumerate(h.val_costs)]
    assert ck.last_path == str(tmp_path / names[-1])
    first = fo.nn.load(tmp_path / names[0])
    assert first.epoch == 1
    for k in kept[0]:
        np.testing.assert_array_equal(first.params[k], kept[0][k])
    opt2 = fo.Adam(first.params, lr=0.05)
    fo.nn.load_optimizer_state(tmp_path / names[0], opt2)
    assert opt2.state_dict()["state"][0]["step"] == 4


def test_callbacks_given_as_a_generator_get_the_model(tmp_path):
    X, y = _data()
    model = MLP([3, 4, 2], output="softmax", seed=0)
    ck = ModelCheckpoint(tmp_path / "m.npz", monitor="loss")
    model.fit(X, y, fo.Adam(model.params), callbacks=(cb for cb in [ck]))
    assert ck.model is model and fo.nn.load(tmp_path / "m.npz").epoch == 1


def test_model_checkpoint_save_best_only(tmp_path):
    ck = ModelCheckpoint(tmp_path / "best-{epoch}.npz", save_best_only=True)
    ck._begin(MLP([1, 1], seed=0))
    for e, v in enumerate([1.0, 0.5, 0.7, 0.4, 0.4]):
        ck(e, {"epoch": e, "cost": 1.0, "val_cost": v})
    assert sorted(os.listdir(tmp_path)) == ["best-1.npz", "best-2.npz", "best-4.npz"]
    assert ck.best == 0.4
    with pytest.raises(RuntimeError, match="gives it the model"):
        ModelCheckpoint(tmp_path / "x.npz")(0, {"val_cost": 1.0})


# -- evaluate, validation_split -------------------------------------------------------------------


def test_evaluate_returns_the_cost_and_the_accuracy():
    X, y = _data()
    model = MLP([3, 4, 2], output="softmax", seed=0, alpha=0.5)
    r = model.evaluate(X, y)
    assert r == {"cost": model.cost(X, y), "accuracy": model.score(X, y)}
    Xr, yr = _data(output="identity")
    reg = MLP([3, 4, 1], output="identity", seed=0)
    assert reg.evaluate(Xr, yr) == {"cost": reg.cost(Xr, yr)}


@pytest.mark.parametrize("axis", [0, 1])
def test_validation_split_holds_out_the_last_rows(axis):
    X, y = _data(m=103)
    cut = int(np.floor(103 * (1 - 0.3)))  # 72: Keras' split
    a, b = (MLP([3, 5, 2], output="softmax", seed=1) for _ in range(2))
    Xa = X.T if axis else X
    ha = a.fit(Xa, y, fo.Adam(a.params), batch_size=10, epochs=2, validation_split=0.3, axis=axis)
    hb = b.fit(
        X[:cut], y[:cut], fo.Adam(b.params), batch_size=10, epochs=2, validation_data=(X[cut:], y[cut:])
    )
    np.testing.assert_array_equal(ha.costs, hb.costs)
    np.testing.assert_array_equal(ha.val_costs, hb.val_costs)
    np.testing.assert_array_equal(ha.val_accuracy, hb.val_accuracy)


def test_validation_split_is_checked_before_anything_changes():
    X, y = _data()
    model = MLP([3, 4, 2], output="softmax", seed=0)
    opt = fo.Adam(model.params)
    before = {k: v.copy() for k, v in model.params.items()}
    with pytest.raises(ValueError, match="validation_data or validation_split, not both"):
        model.fit(X, y, opt, validation_split=0.2, validation_data=(X, y))
    for bad in (1.0, -0.1, "0.2", True):
        with pytest.raises(ValueError, match="validation_split must be a number in"):
            model.fit(X, y, opt, validation_split=bad)
    with pytest.raises(ValueError, match="leaves no training examples"):
        model.fit(X[:1], y[:1], opt, validation_split=0.5)
    with pytest.raises(ValueError, match="leaves no validation examples"):
        model.fit(X, y, opt, validation_split=1e-17)
    _same = all(np.array_equal(before[k], model.params[k]) for k in before)
    assert _same and model.epoch == 0 and opt.state_dict()["state"] == {}

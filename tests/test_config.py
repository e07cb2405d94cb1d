import pytest

from semiseg.config import apply_overrides, list_presets, load_config, validate_config
from semiseg.errors import ConfigError


def test_every_preset_validates():
    assert "synthbrain2d_supervised" in list_presets()
    from semiseg.methods.registry import validate_method_params

    for name in list_presets():
        cfg = load_config(name)
        assert len(cfg.data.patch_size) == cfg.data.spatial_dims
        validate_method_params(cfg.method.name, cfg.method.params)  # params merged from a base preset fit the method


def test_dotted_overrides_are_parsed_as_yaml():
    cfg = load_config("synthbrain2d_supervised", ["optim.lr=0.05", "data.patch_size=[64,64]", "network.kwargs={features: [8, 16]}"])
    assert cfg.optim.lr == 0.05
    assert cfg.data.patch_size == [64, 64]
    assert cfg.network.kwargs == {"features": [8, 16]}


def test_unknown_key_lists_valid_keys_and_suggests():
    with pytest.raises(ConfigError) as exc:
        load_config("synthbrain2d_supervised", ["optim.lrr=0.1"])
    msg = str(exc.value)
    assert "unknown key 'optim.lrr'" in msg and "did you mean 'lr'" in msg and "weight_decay" in msg


def test_bad_value_and_bad_override_syntax():
    with pytest.raises(ConfigError, match="train.iterations"):
        load_config("synthbrain2d_supervised", ["train.iterations=many"])
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config("synthbrain2d_supervised", ["optim.lr"])
    with pytest.raises(ConfigError, match="patch_size"):
        load_config("synthbrain2d_supervised", ["data.spatial_dims=3"])


def test_unknown_preset_names_the_presets():
    with pytest.raises(ConfigError, match="synthbrain2d_supervised"):
        load_config("no_such_preset")


def test_extends_merges_over_base(tmp_path):
    f = tmp_path / "child.yaml"
    f.write_text("extends: synthbrain2d_supervised\noptim: {lr: 0.123}\n")
    cfg = load_config(f)
    assert cfg.optim.lr == 0.123 and cfg.optim.name == "adam" and cfg.data.spatial_dims == 2


def test_params_of_another_method_are_not_inherited(tmp_path):
    """la3d_supervised's params (dice_background) belong to 'supervised': a preset or an override naming
    another method starts from that method's defaults; one naming the same method keeps them."""
    assert load_config("la3d_supervised").method.params == {"dice_background": False}
    assert "dice_background" not in load_config("la3d_bcp").method.params  # bcp has no such parameter
    f = tmp_path / "child.yaml"
    f.write_text("extends: la3d_supervised\nmethod: {name: hybrid_colearning}\n")
    assert load_config(f).method.params == {}
    assert load_config("la3d_supervised", ["method.name=bcp"]).method.params == {}
    assert load_config("la3d_supervised", ["method.name=bcp", "method.params.mask_ratio=0.5"]).method.params == {"mask_ratio": 0.5}
    assert load_config("la3d_supervised", ["method.name=supervised"]).method.params == {"dice_background": False}
    same = tmp_path / "same.yaml"
    same.write_text("extends: la3d_supervised\nmethod: {name: supervised, params: {ce_weight: 1.0}}\n")
    assert load_config(same).method.params == {"dice_background": False, "ce_weight": 1.0}


def test_apply_overrides_creates_nested():
    d = apply_overrides({}, ["a.b.c=3"])
    assert d == {"a": {"b": {"c": 3}}}
    with pytest.raises(ConfigError, match="unknown key 'a'"):
        validate_config(d)


@pytest.mark.parametrize("override, field", [
    ("train.val_every=0", "val_every"), ("train.batch_size=0", "batch_size"), ("train.iterations=-5", "iterations"),
    ("split.labeled=1.5", "split.labeled"), ("optim.lr=0", "lr"), ("train.unlabeled_batch_size=-1", "unlabeled_batch_size"),
    ("data.augmentation.flip=2", "flip"), ("eval.sw_overlap=1.0", "sw_overlap"), ("data.patch_size=[0,32]", "patch_size"),
    ("train.threads=0", "threads"), ("optim.momentum=1.5", "momentum"),
])
def test_numeric_fields_have_bounds(override, field):
    """Issue 11, defects 4-5: zero or negative counts crashed mid-run or ran 'complete' with no model."""
    with pytest.raises(ConfigError, match=field):
        load_config("synthbrain2d_supervised", [override])

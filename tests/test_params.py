"""params.yaml's typed schema: every section validates, and every kind of bad value is refused
in the one format (key, value, rule), before any work."""
from __future__ import annotations

import copy

import pytest
import yaml

from fakes import PARAMS, ROOT
from pipeline import params as P, schema
from pipeline.corpora import LOADERS


def with_change(section: str, dotted: str, value):
    """A copy of params.yaml's ``section`` with the key at ``dotted`` (under it) set, or deleted
    when ``value`` is ``KeyError``."""
    params = copy.deepcopy(PARAMS)
    node = params[section]
    *path, last = dotted.split(".")
    for key in path:
        node = node[key]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return params


def test_every_section_of_params_yaml_validates_and_comes_back_unchanged():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert set(raw) == {*schema.SECTIONS, "corpora", "infer"}
    for name in schema.SECTIONS:
        checked = P.section(raw, name)
        if name == "ingest":   # the corpus options may be left out; they come back as None
            checked = {k: v for k, v in checked.items() if k in raw[name]}
        if name == "evaluate":  # cross_corpus.test may name one corpus; it comes back as a list
            checked["cross_corpus"]["test"] = raw[name]["cross_corpus"]["test"]
        assert checked == raw[name], name
    assert P.section(raw, "corpora") == raw["corpora"]


def test_the_schemas_choices_are_the_codes():
    assert sorted(schema.CORPORA) == sorted(LOADERS)
    assert sorted(schema.MODEL_SECTIONS) == sorted([*schema.MODELS, "fusion"])


@pytest.mark.parametrize("section, key, value, message", [
    ("train", "learning_rate", 0, r"train\.learning_rate=0 must be > 0$"),
    ("train", "epochs", True, r"train\.epochs=True must be an integer$"),
    ("train", "epochs", "40", r"train\.epochs='40' must be an integer$"),
    ("train", "class_weight", "balancd", r"train\.class_weight='balancd' is not valid; choose 'balanced', 'per_corpus' or 'none'$"),
    ("train", "epochs", KeyError, r"train is missing \['epochs'\]; add them \(see params\.yaml\)$"),
    ("train", "epoch", 40, r"train has unknown key\(s\) \['epoch'\]; valid keys are \['out', 'epochs', "),
    ("models", "cnn.specaugment.time_masks", -1, r"models\.cnn\.specaugment\.time_masks=-1 must be >= 0$"),
    ("train", "reduce_lr_factor", 1.0, r"train\.reduce_lr_factor=1\.0 must be < 1$"),
    ("models", "cnn.filters", [64, 0], r"models\.cnn\.filters\[1\]=0 must be > 0$"),
    ("models", "cnn.dropuot", 0.3, r"models\.cnn has unknown key\(s\) \['dropuot'\]"),
    ("models", "svm.gamma", "wide", r"models\.svm\.gamma='wide' must be 'scale', 'auto' or a number > 0$"),
    ("models", "fusion.members", ["cnn", "gru"], r"models\.fusion\.members=\['cnn', 'gru'\] must list 2 or more"),
    ("features", "sequence", ["logmel", "mel"], r"features\.sequence\[1\]='mel' is not valid; choose 'logmel', "),
    ("features", "trim_db", 0, r"features\.trim_db=0 must be > 0$"),
    ("features", "dtype", "float64", r"features\.dtype='float64' is not valid; choose 'float16' or 'float32'$"),
    ("augment", "noise.min_snr_db", 40.0, r"augment\.noise has min_snr_db=40\.0 above max_snr_db=30\.0; swap them$"),
    ("augment", "noise.colour", "red", r"augment\.noise\.colour='red' is not valid; choose 'white', 'pink' or"),
    ("split", "proportions.train", 0, r"split\.proportions\.train=0 must be > 0$"),
    ("split", "assign", {"tess": {"trian": ["OAF"]}}, r"split\.assign\.tess has key 'trian', which is not valid; "),
    ("models", "cnn.dropout", KeyError, r"models\.cnn is missing \['dropout'\]; add them"),
    ("evaluate", "speaker_kfold.k", 1, r"evaluate\.speaker_kfold\.k=1 must be an integer >= 2 or 'loso'"),
    ("evaluate", "protocol", "kfold", r"evaluate\.protocol='kfold' is not valid; choose 'holdout', "),
    ("evaluate", "workers", 0, r"evaluate\.workers=0 must be > 0$"),
    ("ingest", "workers", 1.5, r"ingest\.workers=1\.5 must be an integer$"),
    ("demo", "duration_s", [0.5, 1.0], r"demo\.duration_s=\[0\.5, 1\.0\] must be \[min, max\] seconds"),
    ("base", "seed", -1, r"base\.seed=-1 must be >= 0$"),
])
def test_a_bad_value_is_refused_naming_key_value_and_rule(section, key, value, message):
    with pytest.raises(P.ParamsError, match=r"^params\.yaml: " + message):
        P.section(with_change(section, key, value), section)


def test_every_problem_is_named_on_one_line():
    params = with_change("train", "epochs", 0)
    params["train"]["batch_size"] = -1
    with pytest.raises(P.ParamsError) as err:
        P.section(params, "train")
    assert str(err.value) == ("params.yaml: train.epochs=0 must be > 0; "
                              "params.yaml: train.batch_size=-1 must be > 0")


def test_a_missing_section_or_a_bad_corpora_list_is_named():
    with pytest.raises(P.ParamsError, match=r"missing key 'train'"):
        P.section({}, "train")
    with pytest.raises(P.ParamsError, match=r"corpora=\['ravdess', 'iemocap'\] must list some of"):
        P.section({"corpora": ["ravdess", "iemocap"]}, "corpora")


def test_a_corpus_of_your_own_is_named_in_custom_and_maps_to_the_vocabulary():
    mine = {"table": "labels.csv", "labels": {"ang": "angry"}}
    assert P.section({"corpora": ["emodb", "mine"], "custom": {"mine": mine}}, "corpora") == ["emodb", "mine"]
    with pytest.raises(P.ParamsError, match=r"corpora=\['emodb', 'mine'\] must list some of .* needs its entry"):
        P.section({"corpora": ["emodb", "mine"], "custom": {}}, "corpora")
    with pytest.raises(P.ParamsError, match=r"custom=.* names corpus 'emodb': a custom corpus needs a name"):
        P.section({"custom": {"emodb": mine}}, "custom")
    with pytest.raises(P.ParamsError, match=r"custom\.mine\.labels\.ang='rage' is not valid; choose 'neutral', "):
        P.section({"custom": {"mine": {**mine, "labels": {"ang": "rage"}}}}, "custom")
    with pytest.raises(P.ParamsError, match=r"custom\.mine\.labels has key 1, which must be a string \(quote it: '1'\)"):
        P.section({"custom": {"mine": {**mine, "labels": {1: "angry"}}}}, "custom")
    for clash in ("emo_db", "tess_"):       # their folders would be the built-in corpora's
        with pytest.raises(P.ParamsError, match=rf"names corpus '{clash}': .* whose folder is no other corpus's"):
            P.section({"custom": {clash: mine}}, "custom")
    with pytest.raises(P.ParamsError, match=r"names corpus 'my_data'"):
        P.section({"custom": {"mydata": mine, "my_data": mine}}, "custom")


def test_a_misspelt_key_is_named_with_the_key_it_replaces():
    params = with_change("models", "cnn.dropout", KeyError)
    params["models"]["cnn"]["dropuot"] = 0.3
    with pytest.raises(P.ParamsError, match=r"^params\.yaml: models\.cnn is missing \['dropout'\] and has unknown "
                                            r"key\(s\) \['dropuot'\]; valid keys are \["):
        P.section(params, "models")

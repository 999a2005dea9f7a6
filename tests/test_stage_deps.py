"""dvc.yaml's model stages depend on the feature folders their model can read, and on no other
feature set: `dvc repro train@svm` must not extract ComParE, nor `train@cnn` either functionals set."""
from pathlib import Path, PurePosixPath

import pytest

from pipeline.dataset import folder
from pipeline.models import BUILDERS
from pipeline.schema import MODEL_INPUTS as INPUTS, MODEL_SECTIONS, SVM_INPUTS

ROOT = Path(__file__).resolve().parents[1]
FEATURES = PurePosixPath("data/features")


@pytest.fixture(scope="module")
def feature_deps() -> dict[str, list[PurePosixPath]]:
    from dvc.repo import Repo
    with Repo(str(ROOT)) as repo:
        deps = {s.addressing: [PurePosixPath(d.def_path) for d in s.deps] for s in repo.index.stages}
    return {stage: [p for p in paths if p == FEATURES or FEATURES in p.parents] for stage, paths in deps.items()}


def covered(path: PurePosixPath, deps: list[PurePosixPath]) -> bool:
    return any(path == d or d in path.parents for d in deps)


def read_by(model: str, sources: tuple[str, ...]) -> set[PurePosixPath]:
    """Every feature folder (of one corpus) that ``model`` reads under any input its schema allows."""
    return {PurePosixPath(folder(Path(FEATURES), kind=kind, source=source, corpus="savee").as_posix())
            for kind in INPUTS[model] for source in sources}


@pytest.mark.parametrize("model", sorted(BUILDERS))
def test_a_model_stage_depends_on_every_folder_its_inputs_read_and_no_other_set(model, feature_deps):
    assert set(INPUTS) == set(BUILDERS)
    both = ("original", "augmented")
    for stage, sources in ((f"train@{model}", both), (f"protocol@{model}", both), (f"evaluate@{model}", ("original",))):
        deps = feature_deps[stage]
        assert FEATURES not in deps, f"{stage} depends on every feature set"
        for path in read_by(model, sources):
            assert covered(path, deps), f"{stage} reads {path} but does not depend on it: {deps}"
        unread = {k for k in ("functionals", "compare", "ge2e") if k not in INPUTS[model]}
        assert not [d for d in deps if d.relative_to(FEATURES).parts[0] in unread], f"{stage}: {deps}"


def test_the_fusion_evaluation_depends_on_every_members_features(feature_deps):
    deps = feature_deps["evaluate@fusion"]
    for model in BUILDERS:
        for path in read_by(model, ("original",)):
            assert covered(path, deps), f"evaluate@fusion: {path} not among {deps}"


@pytest.mark.parametrize("model, other", [("svm", "compare"), ("svm_compare", "functionals"), ("svm_ge2e", "functionals"),
                                          ("svm", "ge2e")])
def test_an_svm_refuses_the_other_svms_input_naming_the_model_that_reads_it(model, other):
    from pipeline.params import ParamsError
    from pipeline.models import check_params
    assert other in SVM_INPUTS and MODEL_SECTIONS[model]
    with pytest.raises(ParamsError, match=rf"models\.{model}\.input='{other}' is not this model's: .*svm_compare"):
        check_params(model, {"input": other, "C": 1.0, "gamma": "scale"})
    assert check_params(model, {"input": "utterance", "C": 1.0, "gamma": "scale"})["input"] == "utterance"

"""The field's classic baseline: an RBF support-vector machine over utterance functionals.

scikit-learn's :class:`~sklearn.svm.SVC` (libsvm) with class weights from ``train.class_weight``
and Platt-scaled probabilities (:class:`~sklearn.calibration.CalibratedClassifierCV`), wrapped so the pipeline calls it like a Keras model:
``model(x)`` -> probabilities (n, num_classes). Standardisation is the bundle's scaler
(:func:`pipeline.bundle.standardise`), as for the deep models, so the pair is exactly
eGeMAPS functionals + ``StandardScaler`` + RBF SVM.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from pipeline.schema import SVM_INPUTS as INPUTS

CALIBRATION_FOLDS = 5


class SVMClassifier:
    """An RBF SVM with a fixed number of output classes.

    Parameters
    ----------
    num_classes : width of the probability output; a class absent from the training data
        gets probability 0.
    C : regularisation (larger: fewer margin violations, more overfitting).
    gamma : RBF width, ``"scale"`` (1 / (n_features * var(x))) or a number > 0.
    name : the model's name (``models.<name>``).
    """

    def __init__(self, *, num_classes: int, C: float, gamma: str | float, name: str = "svm") -> None:
        self.num_classes, self.C, self.gamma, self.name = int(num_classes), float(C), gamma, name
        self.estimator = None

    def fit(self, x: np.ndarray, y: np.ndarray, *, class_weight: Mapping[int, float] | None, seed: int,
            sample_weight: np.ndarray | None = None) -> "SVMClassifier":
        """Fit on standardised vectors ``x`` (n, features) and integer labels ``y`` (n,);
        ``sample_weight`` (one per example, scaling its C like a class weight) if given."""
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.svm import SVC

        svc = SVC(kernel="rbf", C=self.C, gamma=self.gamma, class_weight=dict(class_weight or {}) or None,
                  random_state=int(seed) % (2 ** 32), cache_size=500)
        # Platt scaling fitted on 5-fold out-of-fold decision values, one SVC on all the data
        # (what SVC(probability=True) did before scikit-learn 1.9 deprecated it).
        counts = np.bincount(np.asarray(y))
        folds = min(CALIBRATION_FOLDS, int(counts[counts > 0].min()) if counts.any() else 0)
        if folds < 2:  # a class with one clip: no calibration folds; softmax of the decision values instead
            self.estimator = svc
        else:
            self.estimator = CalibratedClassifierCV(svc, method="sigmoid", cv=folds, ensemble=False)
        extra = {} if sample_weight is None else {"sample_weight": np.asarray(sample_weight, dtype=np.float64)}
        self.estimator.fit(np.asarray(x, dtype=np.float64), np.asarray(y), **extra)
        # Platt's two parameters per class come from an L-BFGS fit whose last bits follow the
        # CPU's log/exp kernels (NumPy picks AVX-512 or AVX2 code at run time): rounded to
        # float32, the saved model is the same on any CPU (README, "Reproducibility").
        for calibrated in getattr(self.estimator, "calibrated_classifiers_", []):
            for sigmoid in calibrated.calibrators:
                sigmoid.a_, sigmoid.b_ = float(np.float32(sigmoid.a_)), float(np.float32(sigmoid.b_))
        return self

    def __call__(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Probabilities (n, num_classes), float32, in the pipeline's label order."""
        if self.estimator is None:
            raise ValueError(f"{self.name}: the SVM is not fitted; call fit() first")
        x = np.asarray(x, dtype=np.float64)
        out = np.zeros((len(x), self.num_classes), dtype=np.float32)
        if len(x):
            if hasattr(self.estimator, "predict_proba"):
                p = self.estimator.predict_proba(x)
            else:
                d = self.estimator.decision_function(x)
                d = np.stack([-d, d], axis=1) if d.ndim == 1 else d
                p = np.exp(d - d.max(axis=1, keepdims=True))
                p /= p.sum(axis=1, keepdims=True)
            out[:, self.estimator.classes_] = p
        return out

    def count_params(self) -> int:
        """Stored numbers: support vectors and their coefficients."""
        if self.estimator is None:
            return 0
        svc = getattr(self.estimator, "calibrated_classifiers_", [None])[0]
        svc = self.estimator if svc is None else svc.estimator
        return int(svc.support_vectors_.size + svc.dual_coef_.size)


def build_svm(input_shape: tuple[int, ...], num_classes: int, *, C: float, gamma: str | float,
              input: str = "functionals", name: str = "svm") -> SVMClassifier:
    """An unfitted :class:`SVMClassifier` for vectors of ``input_shape == (features,)``."""
    if input not in INPUTS:
        raise ValueError(f"input={input!r} is not valid; choose one of {list(INPUTS)}")
    if len(input_shape) != 1:
        raise ValueError(f"an SVM reads one vector per clip, input_shape (features,); got {tuple(input_shape)}")
    return SVMClassifier(num_classes=num_classes, C=C, gamma=gamma, name=name)

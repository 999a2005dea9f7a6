"""The field's classic baseline: an RBF support-vector machine over utterance functionals.

scikit-learn's :class:`~sklearn.svm.SVC` (libsvm) with class weights from ``train.class_weight``
and Platt-scaled probabilities (:class:`~sklearn.calibration.CalibratedClassifierCV`), wrapped so the pipeline calls it like a Keras model:
``model(x)`` -> probabilities (n, num_classes). Standardisation is the bundle's scaler
(:func:`pipeline.bundle.standardise`), as for the deep models, so the pair is exactly
eGeMAPS functionals + ``StandardScaler`` + RBF SVM.

With ``gram=True`` the RBF kernel matrix is computed once with BLAS (:func:`rbf_gram`) and
libsvm reads it (``kernel="precomputed"``): the same SVM, but for thousands of features
(ComParE's 6,373) about 15 times faster than libsvm's own kernel loop, which recomputes
every dot product in each of the six fits (five calibration folds and the final one). BLAS
sums in a CPU-dependent order, so the kernel is rounded to float32: the model is the same on
any CPU unless a value falls on a float32 rounding boundary (README, "Reproducibility").
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from pipeline.params import ParamsError
from pipeline.schema import SVM_INPUTS as INPUTS

CALIBRATION_FOLDS = 5


GRAM_ROWS = 1024
"""Kernel rows computed at once by :func:`rbf_gram`: its memory is the kernel and this many rows."""


def rbf_gram(a: np.ndarray, b: np.ndarray, *, gamma: float, rows: int = GRAM_ROWS) -> np.ndarray:
    """The RBF kernel ``exp(-gamma * |a_i - b_j|^2)`` of every row pair (len(a), len(b)),
    float64 holding float32-rounded values (see the module docstring).

    Computed ``rows`` rows at a time into the one output array, so the peak memory is the
    kernel plus a block, not the three kernel-sized temporaries of the one-line formula (whose
    values it gives to the bit: the same operations per element; ``tests/test_functionals.py``).

    >>> rbf_gram(np.zeros((1, 2)), np.array([[0.0, 0.0], [1.0, 1.0]]), gamma=0.5).round(4).tolist()
    [[1.0, 0.3679]]
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    a_sq, b_sq = (a * a).sum(axis=1), (b * b).sum(axis=1)
    out = np.empty((len(a), len(b)))
    for start in range(0, len(a), rows):
        block = slice(start, start + rows)
        d = a_sq[block, None] + b_sq[None, :]
        ab = a[block] @ b.T
        ab *= 2.0
        d -= ab
        np.maximum(d, 0.0, out=d)
        d *= -gamma
        np.exp(d, out=d)
        out[block] = d.astype(np.float32)
    return out


def gram_fit_bytes(n: int, folds: int = CALIBRATION_FOLDS) -> int:
    """Peak memory of fitting on ``n`` clips with a precomputed kernel: the n x n float64
    kernel, and the calibration fold's training and held-out slices of it that scikit-learn
    copies (``(1 - 1/folds)`` of the rows by all but ``1/folds`` of the columns)."""
    share = 1.0 - 1.0 / folds if folds >= 2 else 0.0
    return int(8 * n * n * (1.0 + share))


def check_gram_memory(n: int, *, folds: int, name: str, available: int | None = None) -> None:
    """Refuse, in one line naming the fix, a precomputed-kernel fit that would not fit in the
    memory available now (``available`` bytes; default: what psutil reports), rather than let
    the system kill the process part way through."""
    if available is None:
        import psutil
        available = int(psutil.virtual_memory().available)
    need = gram_fit_bytes(n, folds)
    if need > available:
        raise ParamsError(f"params.yaml: models.{name}.gram=true: the precomputed RBF kernel over {n:,} training clips "
                          f"needs about {need / 1e9:.1f} GB and {available / 1e9:.1f} GB of memory is available; lower "
                          f"models.{name}.copies (fewer augmented copies per clip), or set models.{name}.gram: false "
                          "(libsvm's own kernel loop: little memory, slower)")


class SVMClassifier:
    """An RBF SVM with a fixed number of output classes.

    Parameters
    ----------
    num_classes : width of the probability output; a class absent from the training data
        gets probability 0.
    C : regularisation (larger: fewer margin violations, more overfitting).
    gamma : RBF width, ``"scale"`` (1 / (n_features * var(x))), ``"auto"`` (1 / n_features) or
        a number > 0.
    name : the model's name (``models.<name>``).
    gram : precompute the kernel matrix (:func:`rbf_gram`) instead of libsvm's kernel loop; the
        fitted model then keeps its support vectors (float32) to compute the test kernel.
    """

    def __init__(self, *, num_classes: int, C: float, gamma: str | float, name: str = "svm",
                 gram: bool = False) -> None:
        self.num_classes, self.C, self.gamma, self.name = int(num_classes), float(C), gamma, name
        self.gram = bool(gram)
        self.estimator = None

    def fit(self, x: np.ndarray, y: np.ndarray, *, class_weight: Mapping[int, float] | None, seed: int,
            sample_weight: np.ndarray | None = None) -> "SVMClassifier":
        """Fit on standardised vectors ``x`` (n, features) and integer labels ``y`` (n,);
        ``sample_weight`` (one per example, scaling its C like a class weight) if given."""
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.svm import SVC

        svc = SVC(kernel="precomputed" if self.gram else "rbf", C=self.C, gamma=self.gamma,
                  class_weight=dict(class_weight or {}) or None, random_state=int(seed) % (2 ** 32), cache_size=500)
        x = np.asarray(x, dtype=np.float32 if self.gram else np.float64)   # gram: the kept vectors are exact
        if self.gram:
            var = float(x.astype(np.float64).var())   # as scikit-learn's "scale"
            self.gamma_ = ((1.0 / (x.shape[1] * var) if var else 1.0) if self.gamma == "scale"
                           else 1.0 / x.shape[1] if self.gamma == "auto" else float(self.gamma))
            self.n_train_ = len(x)
        # Platt scaling fitted on 5-fold out-of-fold decision values, one SVC on all the data
        # (what SVC(probability=True) did before scikit-learn 1.9 deprecated it).
        counts = np.bincount(np.asarray(y))
        folds = min(CALIBRATION_FOLDS, int(counts[counts > 0].min()) if counts.any() else 0)
        if self.gram:
            check_gram_memory(len(x), folds=folds, name=self.name)
        if folds < 2:  # a class with one clip: no calibration folds; softmax of the decision values instead
            self.estimator = svc
        else:
            self.estimator = CalibratedClassifierCV(svc, method="sigmoid", cv=folds, ensemble=False)
        extra = {} if sample_weight is None else {"sample_weight": np.asarray(sample_weight, dtype=np.float64)}
        self.estimator.fit(rbf_gram(x, x, gamma=self.gamma_) if self.gram else x, np.asarray(y), **extra)
        if self.gram:   # the test kernel needs the support vectors only (other columns have no weight)
            self.support_ = self._svc().support_
            self.support_x_ = x[self.support_]
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
        if self.gram:
            k = np.zeros((len(x), self.n_train_))
            k[:, self.support_] = rbf_gram(x, self.support_x_, gamma=self.gamma_)
            x = k
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

    def _svc(self):
        """The SVC fitted on all the training data (inside the calibration, if any)."""
        svc = getattr(self.estimator, "calibrated_classifiers_", [None])[0]
        return self.estimator if svc is None else svc.estimator

    def count_params(self) -> int:
        """Stored numbers: support vectors and their coefficients."""
        if self.estimator is None:
            return 0
        svc = self._svc()
        vectors = self.support_x_ if self.gram else svc.support_vectors_
        return int(vectors.size + svc.dual_coef_.size)


def build_svm(input_shape: tuple[int, ...], num_classes: int, *, C: float, gamma: str | float,
              input: str = "functionals", name: str = "svm", gram: bool | None = False) -> SVMClassifier:
    """An unfitted :class:`SVMClassifier` for vectors of ``input_shape == (features,)``."""
    if input not in INPUTS:
        raise ValueError(f"input={input!r} is not valid; choose one of {list(INPUTS)}")
    if len(input_shape) != 1:
        raise ValueError(f"an SVM reads one vector per clip, input_shape (features,); got {tuple(input_shape)}")
    return SVMClassifier(num_classes=num_classes, C=C, gamma=gamma, name=name, gram=bool(gram))

"""The small MLP a head may use instead of logistic regression (``radzoo head train --kind mlp``).

One hidden ReLU layer, trained full-batch with Adam and weight decay on standardised embeddings
(binary cross-entropy), seeded. It is a scikit-learn classifier (``fit``, ``decision_function``,
``predict``) so ``CalibratedClassifierCV`` calibrates it exactly like the linear head, and its
layers are stored as safetensors (``head{j}.mlp.{i}.weight`` / ``.bias``) that ``radzoo.heads``
applies with numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

DEFAULT_HIDDEN = 64


class TorchMLPClassifier(ClassifierMixin, BaseEstimator):
    """``hidden`` ReLU units, ``epochs`` full-batch Adam steps (lr, weight decay), seeded."""

    def __init__(self, hidden: int = DEFAULT_HIDDEN, epochs: int = 200, lr: float = 1e-3,
                 weight_decay: float = 1e-2, seed: int = 0) -> None:
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.seed = seed

    def fit(self, x: Any, y: Any) -> TorchMLPClassifier:
        import torch

        x_t = torch.as_tensor(np.asarray(x, dtype=np.float32))
        y_t = torch.as_tensor(np.asarray(y, dtype=np.float32)).reshape(-1, 1)
        self.classes_ = np.array([0, 1])
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a 64-unit MLP on a few hundred rows: more threads only wait on each other
        try:
            self._train(x_t, y_t)
        finally:
            torch.set_num_threads(threads)
        return self

    def _train(self, x_t: Any, y_t: Any) -> None:
        import torch
        from torch import nn

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = nn.Sequential(nn.Linear(x_t.shape[1], self.hidden), nn.ReLU(), nn.Linear(self.hidden, 1))
            opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            pos = float(y_t.mean())
            weight = torch.tensor((1.0 - pos) / max(pos, 1e-6))  # balance the classes, like a probe's AUROC
            loss_fn = nn.BCEWithLogitsLoss(pos_weight=weight)
            for _ in range(self.epochs):
                opt.zero_grad()
                loss_fn(net(x_t), y_t).backward()
                opt.step()
        self.layers_ = [(m.weight.detach().double().numpy().copy(), m.bias.detach().double().numpy().copy())
                        for m in net if isinstance(m, nn.Linear)]

    def decision_function(self, x: Any) -> np.ndarray:
        h = np.asarray(x, dtype=np.float64)
        for i, (w, b) in enumerate(self.layers_):
            h = h @ w.T + b
            if i < len(self.layers_) - 1:
                h = np.maximum(h, 0.0)
        return h[:, 0]

    def predict(self, x: Any) -> np.ndarray:
        return (self.decision_function(x) > 0).astype(np.int64)

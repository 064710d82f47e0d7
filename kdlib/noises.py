"""RCD noises by name: what an rcd student distils from in place of its teacher's logits.

A noise is a builder

    draw(generator, n, n_classes, teacher_logits) -> (n, n_classes) logits

seeded by the run's noise seed, with its metadata:

    resampled             drawn afresh for every batch (n = the batch size); otherwise drawn once for the
                          whole training set (n = its size) and indexed by training example
    needs_teacher_logits  reads the teacher's training logits (the rcd run then waits for its teacher)
    feature_map           has a feature-map form for the feature variants: Gaussian at the teacher's feature
                          scale, fixed per example or resampled like the logits (see `arms.FeatureMatch`)

To add a noise: register a builder here and name it in study.yaml (`rcd_noise`, `rcd_variants`).
"""
from __future__ import annotations

import torch

from .registry import Registry

NOISES = Registry("RCD noise")


@NOISES.register("unit_fixed", resampled=False, needs_teacher_logits=False, feature_map=True,
                 description="per-example N(0, 1) logits drawn once for the run (the reconstructed default)")
def unit_fixed(gen, n, n_classes, teacher_logits):
    return torch.randn(n, n_classes, generator=gen)


@NOISES.register("unit_resampled", resampled=True, needs_teacher_logits=False, feature_map=True,
                 description="fresh N(0, 1) logits at every step")
def unit_resampled(gen, n, n_classes, teacher_logits):
    return torch.randn(n, n_classes, generator=gen)


@NOISES.register("teacher_scaled", resampled=False, needs_teacher_logits=True, feature_map=True,
                 description="per-example fixed Gaussian logits with the teacher's train-logit standard deviation")
def teacher_scaled(gen, n, n_classes, teacher_logits):
    return torch.randn(n, n_classes, generator=gen) * teacher_logits.float().std()


# It keeps how confident the teacher was on each example (information about the input), removing only which
# class it pointed to. A feature map has no such per-example form without running the teacher, which rcd never does.
@NOISES.register("permuted", resampled=False, needs_teacher_logits=True, feature_map=False,
                 description="each example's teacher logits under a random class permutation, fixed for the run")
def permuted(gen, n, n_classes, teacher_logits):
    perm = torch.rand(n, n_classes, generator=gen).argsort(1)
    return teacher_logits.float().cpu().gather(1, perm)


def feature_map_noises() -> list[str]:
    """The noises a feature variant can follow."""
    return [n for n in NOISES if NOISES.meta(n)["feature_map"]]

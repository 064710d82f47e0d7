"""RCD noises by name: the registry holds exactly the noises the study has always had, each draws the same
numbers it drew when the noise was built by if / elif in kdlib.arms, and its metadata says what it needs."""
import pytest
import torch

from kdlib.arms import Batch, RCDNoise
from kdlib.noises import NOISES, feature_map_noises

TEACHER = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0], [1.5, 1.5, -0.5], [-1.0, 0.0, 4.0]])  # 4 examples, 3 classes
# RCDNoise(kind, 4, 3, seed=7) bound to TEACHER, two calls on the batch of examples [2, 0, 3], computed with
# kdlib.arms at commit 5a8b758 (before the registry); a fixed noise repeats, a resampled one moves on.
U = [[-0.3556250333786011, 1.2323857545852661, 0.13817265629768372],
     [-0.1467950940132141, 0.7861412763595581, 0.9468216300010681],
     [-1.6821985244750977, 0.317678302526474, 0.13280697166919708]]
S = [[-0.6313235759735107, 2.187793731689453, 0.2452910989522934],
     [-0.2605980932712555, 1.3955978155136108, 1.6808457374572754],
     [-2.9863240718841553, 0.5639586448669434, 0.23576566576957703]]
P = [[1.5, -0.5, 1.5], [-1.0, 2.0, 0.5], [4.0, -1.0, 0.0]]
PINNED = {
    "unit_fixed": (U, U),
    "unit_resampled": ([[-0.1467950940132141, 0.7861412763595581, 0.9468216300010681],
                        [-1.1143440008163452, 1.6907901763916016, -0.8948279023170471],
                        [-0.3556250333786011, 1.2323857545852661, 0.13817265629768372]],
                       [[-1.6821985244750977, 0.317678302526474, 0.13280697166919708],
                        [0.13732409477233887, 0.2405461221933365, 1.3954508304595947],
                        [1.3470226526260376, 2.4382081031799316, 0.2027582824230194]]),
    "teacher_scaled": (S, S),
    "permuted": (P, P),
}


def test_the_registry_lists_exactly_the_old_noises():
    assert NOISES.names() == sorted(PINNED)


@pytest.mark.parametrize("kind", sorted(PINNED))
def test_each_noise_draws_what_it_drew_before_the_registry(kind):
    noise = RCDNoise(kind, 4, 3, seed=7)
    noise.bind(None, TEACHER, "cpu")
    batch = Batch(None, None, torch.tensor([2, 0, 3]))
    first, second = noise(batch), noise(batch)
    assert torch.equal(first, torch.tensor(PINNED[kind][0])) and torch.equal(second, torch.tensor(PINNED[kind][1]))


def test_metadata_says_what_each_noise_needs():
    needs = {n for n in NOISES if NOISES.meta(n)["needs_teacher_logits"]}
    assert needs == {"teacher_scaled", "permuted"}
    assert {n for n in NOISES if NOISES.meta(n)["resampled"]} == {"unit_resampled"}
    assert set(feature_map_noises()) == {"unit_fixed", "unit_resampled", "teacher_scaled"}
    # needs_teacher_logits is what the arm asks of its run
    assert [RCDNoise(n, 4, 3, seed=0).needs_logits for n in NOISES] == [n in needs for n in NOISES]

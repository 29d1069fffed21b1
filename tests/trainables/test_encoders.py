import pytest
import torch

from trainables.encoders import ENCODERS, linear, mlp, n_params


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_every_encoder_maps_batches_to_embeddings(name):
    model = ENCODERS[name](10, 6)
    assert model(torch.randn(5, 10)).shape == (5, 6)
    assert n_params(model) > 0


def test_parameter_counts_match_the_closed_forms():
    assert n_params(linear(10, 6)) == 10 * 6 + 6
    # depth 2, width 32: 10->32, 32->32, 32->6
    assert n_params(mlp(10, 6, width=32, depth=2)) == (10 * 32 + 32) + (32 * 32 + 32) + (32 * 6 + 6)


def test_mlp_rejects_empty_capacity():
    with pytest.raises(ValueError, match="width"):
        mlp(4, 2, width=0)

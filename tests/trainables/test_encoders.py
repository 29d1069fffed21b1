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


def test_hidden_sizes_activation_and_sphere_output_express_cl_icas_encoder():
    model = mlp(5, 5, hidden="50,250,250,250,250,50", activation="leaky_relu", normalize="sphere")
    sizes = [m.out_features for m in model if isinstance(m, torch.nn.Linear)]
    assert sizes == [50, 250, 250, 250, 250, 50, 5]
    assert all(m.negative_slope == 0.01 for m in model if isinstance(m, torch.nn.LeakyReLU))
    z = model(torch.randn(7, 5))
    torch.testing.assert_close(z.norm(dim=1), torch.ones(7))
    assert linear(4, 3, normalize="sphere")(torch.randn(2, 4)).norm(dim=1).tolist() == pytest.approx([1, 1])


@pytest.mark.parametrize(("kwargs", "named"), [({"hidden": "8,x"}, "hidden"), ({"activation": "tanh"}, "activation"),
                                               ({"normalize": "ball"}, "normalize"), ({"hidden": "8,0"}, "hidden")])
def test_bad_encoder_options_are_named(kwargs, named):
    with pytest.raises(ValueError, match=named):
        mlp(4, 2, **kwargs)

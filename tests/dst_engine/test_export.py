"""CSR export: sparse linear and 1x1 conv layers become torch.sparse_csr, outputs unchanged."""

import pytest
import torch
from torch import nn

from dstlib.sparse.export import CSRLinear, CSRPointwiseConv2d, to_sparse_csr
from dstlib.sparse.prune_at_init import magnitude_prune


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)  # not 1x1: stays dense
        self.point = nn.Conv2d(16, 32, 1)
        self.point_strided = nn.Conv2d(32, 32, 1, stride=2, bias=False)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 24), nn.ReLU(), nn.Linear(24, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        return self.head(torch.relu(self.point_strided(torch.relu(self.point(x)))))


def sparse_net(keep_dense: tuple[str, ...] = ()) -> Net:
    torch.manual_seed(0)
    net = Net()
    masks = magnitude_prune(net, 0.1, scope="layer")
    with torch.no_grad():
        for name, mask in masks.items():
            if name.rpartition(".")[0] not in keep_dense:
                net.get_parameter(name).mul_(mask)
    return net


def test_outputs_equal_and_layers_converted():
    net = sparse_net(keep_dense=("head.3",))
    x = torch.randn(4, 3, 8, 8)
    exported = to_sparse_csr(net)
    assert isinstance(exported.point, CSRPointwiseConv2d)
    assert isinstance(exported.point_strided, CSRPointwiseConv2d)
    assert isinstance(exported.head[1], CSRLinear)
    assert type(exported.stem) is nn.Conv2d  # 3x3
    assert type(exported.head[3]) is nn.Linear  # dense weight
    assert exported.head[1].weight.layout == torch.sparse_csr
    assert exported.head[1].weight._nnz() == int(torch.count_nonzero(net.head[1].weight))
    with torch.no_grad():
        torch.testing.assert_close(exported(x), net(x), rtol=1e-5, atol=1e-6)
    assert type(net.point) is nn.Conv2d  # the original is untouched


def test_linear_on_sequences_and_contiguous_output():
    torch.manual_seed(0)
    linear = nn.Linear(12, 7)
    with torch.no_grad():
        linear.weight.mul_(torch.rand_like(linear.weight) < 0.2)
    x = torch.randn(2, 5, 12)
    exported = to_sparse_csr(nn.Sequential(linear))
    with torch.no_grad():
        out = exported(x)
        torch.testing.assert_close(out, linear(x), rtol=1e-5, atol=1e-6)
    assert out.shape == (2, 5, 7) and out.is_contiguous()


def test_max_density_controls_conversion():
    net = sparse_net()
    assert isinstance(to_sparse_csr(net, max_density=0.1).point, CSRPointwiseConv2d)
    assert type(to_sparse_csr(net, max_density=0.05).point) is nn.Conv2d
    with pytest.raises(ValueError, match="max_density"):
        to_sparse_csr(net, max_density=0.0)

import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, tensor_0, tensor_1):
        tensor_2 = torch.nn.functional.hardsigmoid(tensor_0)
        tensor_3 = torch.tril(tensor_2, diagonal=-1)
        tensor_4 = torch.argmin(tensor_1, dim=0, keepdim=False)
        return (tensor_3, tensor_4,)


def get_inputs():
    tensor_0 = torch.randn([2, 1, 1, 512, 512], dtype=torch.float32)
    tensor_1 = torch.randn([14, 3, 16], dtype=torch.float32)
    return [tensor_0, tensor_1]


def get_init_inputs():
    return []

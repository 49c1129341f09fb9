import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, tensor_0):
        tensor_1 = torch.nn.functional.hardsigmoid(tensor_0)
        tensor_2 = torch.tril(tensor_1, diagonal=0)
        tensor_3 = torch.argmin(tensor_1, dim=2, keepdim=True)
        return (tensor_2, tensor_3,)


def get_inputs():
    tensor_0 = torch.randn([2, 241, 2, 512, 1], dtype=torch.float32)
    return [tensor_0]


def get_init_inputs():
    return []

import torch
import torch.nn as nn


def device():
    return torch.cuda.current_device() if torch.cuda.is_available() else None


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, tensor_0):
        tensor_1 = torch.abs(tensor_0)
        tensor_2 = tensor_1 * 1.5
        tensor_3 = torch.tanh(tensor_2)
        return tensor_3


def get_inputs():
    tensor_0 = torch.randn([2, 241, 1, 512, 1], dtype=torch.float32, device=device())
    return [tensor_0]


def get_init_inputs():
    return []

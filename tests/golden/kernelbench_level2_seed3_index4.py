import torch
import torch.nn as nn


def device():
    return torch.cuda.current_device() if torch.cuda.is_available() else None


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, tensor_0, tensor_1):
        tensor_2 = torch.abs(tensor_0)
        tensor_3 = torch.nn.functional.selu(tensor_2)
        tensor_4 = torch.nn.functional.huber_loss(tensor_3, tensor_1, reduction='none', delta=1.0).mean(dim=1, keepdim=True)
        return tensor_4


def get_inputs():
    tensor_0 = torch.randn([2, 241, 1, 512, 1], dtype=torch.float32, device=device())
    tensor_1 = torch.randn([2, 241, 1, 512, 1], dtype=torch.float32, device=device())
    return [tensor_0, tensor_1]


def get_init_inputs():
    return []

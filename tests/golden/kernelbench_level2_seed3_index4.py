import torch
import torch.nn as nn


def device():
    return torch.cuda.current_device() if torch.cuda.is_available() else None


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, tensor_0):
        tensor_1 = torch.sigmoid(tensor_0)
        tensor_2 = torch.nn.functional.avg_pool3d(tensor_1, kernel_size=2, stride=3, padding=0)
        tensor_3 = torch.norm(tensor_2, dim=2, keepdim=True)
        return tensor_3


def get_inputs():
    tensor_0 = torch.randn([2, 16, 3679, 2, 2], dtype=torch.float32, device=device())
    return [tensor_0]


def get_init_inputs():
    return []

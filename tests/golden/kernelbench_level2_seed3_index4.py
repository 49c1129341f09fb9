import torch
import torch.nn as nn


def device():
    return torch.cuda.current_device() if torch.cuda.is_available() else None


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, tensor_0, tensor_1, tensor_2):
        tensor_3 = torch.minimum(tensor_0, tensor_1)
        tensor_4 = torch.nn.functional.avg_pool3d(tensor_3, kernel_size=2, stride=3, padding=0)
        tensor_5 = torch.maximum(tensor_4, tensor_2)
        return tensor_5


def get_inputs():
    tensor_0 = torch.randn([2, 2, 3679, 2, 2], dtype=torch.float32, device=device())
    tensor_1 = torch.randn([2, 2, 3679, 2, 2], dtype=torch.float32, device=device())
    tensor_2 = torch.randn([2, 2, 1226, 1, 1], dtype=torch.float32, device=device())
    return [tensor_0, tensor_1, tensor_2]


def get_init_inputs():
    return []

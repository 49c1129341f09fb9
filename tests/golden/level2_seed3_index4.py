import torch


def get_inputs():
    tensor_0 = torch.randn([2, 241, 1, 512, 1], dtype=torch.float32)
    return [tensor_0]


def fused_operator(tensor_0):
    tensor_1 = torch.abs(tensor_0)
    tensor_2 = tensor_1 * 1.5
    tensor_3 = torch.tanh(tensor_2)
    return [tensor_3]

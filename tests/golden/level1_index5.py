import torch


def get_inputs():
    tensor_0 = torch.randn([256, 32, 116], dtype=torch.float32)
    return [tensor_0]


def fused_operator(tensor_0):
    tensor_1 = torch.abs(tensor_0)
    tensor_2 = torch.nn.functional.avg_pool1d(tensor_1, kernel_size=2, stride=1, padding=0)
    return [tensor_2]

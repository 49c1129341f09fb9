import torch


def get_inputs():
    tensor_0 = torch.randn([1, 131, 465, 6], dtype=torch.float32)
    return [tensor_0]


def fused_operator(tensor_0):
    tensor_1 = torch.abs(tensor_0)
    tensor_2 = torch.nn.functional.avg_pool2d(tensor_1, kernel_size=3, stride=1, padding=0)
    return [tensor_2]

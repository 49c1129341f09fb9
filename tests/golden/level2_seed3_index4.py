import torch


def get_inputs():
    tensor_0 = torch.randn([2, 1, 3679, 2, 2], dtype=torch.float32)
    tensor_1 = torch.randn([2, 1, 3679, 2, 2], dtype=torch.float32)
    return [tensor_0, tensor_1]


def fused_operator(tensor_0, tensor_1):
    tensor_2 = torch.minimum(tensor_0, tensor_1)
    tensor_3 = torch.nn.functional.avg_pool3d(tensor_2, kernel_size=2, stride=3, padding=0)
    tensor_4 = torch.maximum(tensor_2, tensor_1)
    return [tensor_3, tensor_4]

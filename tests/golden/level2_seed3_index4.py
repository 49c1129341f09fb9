import torch


def get_inputs():
    tensor_0 = torch.randn([2, 1, 3679, 2, 2], dtype=torch.float32)
    return [tensor_0]


def fused_operator(tensor_0):
    tensor_1 = torch.sigmoid(tensor_0)
    tensor_2 = torch.nn.functional.avg_pool3d(tensor_1, kernel_size=2, stride=3, padding=0)
    tensor_3 = torch.norm(tensor_1, dim=0, keepdim=False)
    return [tensor_2, tensor_3]

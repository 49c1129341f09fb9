import torch

torch.backends.cudnn.allow_tf32 = False  # full float32 convolutions (graded at 1e-4)


def get_inputs():
    tensor_0 = torch.randn([1, 256, 16, 5], dtype=torch.float32)
    tensor_1 = torch.empty([32, 128, 3, 3], dtype=torch.float32).uniform_(-0.0294628, 0.0294628)
    tensor_2 = torch.empty([1, 32], dtype=torch.float32).uniform_(-1.0, 1.0)
    return [tensor_0, tensor_1, tensor_2]


def fused_operator(tensor_0, tensor_1, tensor_2):
    tensor_3 = torch.nn.functional.conv2d(tensor_0, tensor_1, stride=1, padding=0, dilation=2, groups=2)
    tensor_4 = torch.relu(tensor_3)
    tensor_5 = torch.matmul(tensor_3, tensor_2)
    return [tensor_4, tensor_5]

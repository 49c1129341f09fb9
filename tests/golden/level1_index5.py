import torch


def get_inputs():
    tensor_0 = torch.randn([1024, 131, 1], dtype=torch.float32)
    tensor_1 = torch.randn([1024, 131, 1], dtype=torch.float32)
    tensor_2 = torch.randn([1024, 6, 1], dtype=torch.float32)
    tensor_3 = torch.randn([1024, 6, 1], dtype=torch.float32)
    return [tensor_0, tensor_1, tensor_2, tensor_3]


def fused_operator(tensor_0, tensor_1, tensor_2, tensor_3):
    tensor_4 = torch.add(tensor_0, tensor_1)
    tensor_5 = torch.nn.functional.scaled_dot_product_attention(tensor_4, tensor_2, tensor_3)
    return [tensor_5]

"""ssgan: SemanticStyleGAN in PyTorch with Triton kernels."""

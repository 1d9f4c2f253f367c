"""CPU emulation of the CUDA kernels, for testing their logic where no GPU is available."""

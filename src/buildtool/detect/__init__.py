"""Host detection: CPU features and ISA level, OS and arch, GPUs, toolchains."""

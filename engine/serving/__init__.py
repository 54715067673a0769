"""What a server shares between its sessions: loaded models, computed runs and the memory they may use."""

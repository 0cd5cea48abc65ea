"""Evaluation of trained models: test-set NLL, FID/KID/precision-recall and their floors, class
accuracy, the optimal-denoiser gap."""

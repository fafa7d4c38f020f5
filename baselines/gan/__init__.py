"""GAN baselines: Real-ESRGAN (RRDBNet), ESRGAN-thick (RRDN), a trainable ESRGAN-style GAN, converters."""

"""entropy-compression (ECTensoRF): neural compression of TensoRF feature planes with learned
latents, a light decoder and a masked entropy model coded by CompressAI."""

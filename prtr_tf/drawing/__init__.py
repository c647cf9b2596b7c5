"""Drawing poses on images and plotting curves."""

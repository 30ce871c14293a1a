"""What learns: algorithm construction, networks, features extractors and pretrained backbones."""

"""BiSeNet model: `bisenet(num_classes, backbone, architecture)` and its parts (paper names).

Registries: backbones.REGISTRY (backbones), architectures.REGISTRY (network layouts).
"""
from bisenet_core.model.architectures import bisenet
from bisenet_core.model.bisenet import (AttentionRefinementModule, BiSeNet, BiSeNetOutput,
                                        ContextPath, FeatureFusionModule, RefineFirstContextPath,
                                        SegmentationHead, SpatialPath)
from bisenet_core.model.pretrained import load_backbone_weights

__all__ = ['AttentionRefinementModule', 'BiSeNet', 'BiSeNetOutput', 'ContextPath',
           'FeatureFusionModule', 'RefineFirstContextPath', 'SegmentationHead', 'SpatialPath',
           'bisenet', 'load_backbone_weights']

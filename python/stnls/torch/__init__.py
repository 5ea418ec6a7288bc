"""The torch adapter: stnls ops registered with torch.library (so torch.compile and
torch.export see them), their autograd, and the nn.Module classes."""
from . import agg, search, tile

__all__ = ["search", "tile", "agg"]

"""Which adapter handles a call: torch tensors go to the torch adapter (autograd), anything
else to the array adapter. Deciding by the type's module keeps torch unimported."""


def is_torch(x) -> bool:
    return type(x).__module__.split(".")[0] == "torch"

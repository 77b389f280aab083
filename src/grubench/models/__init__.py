"""Models: `SequenceModel` (encoding -> recurrent stack -> head) and the recurrent layers it runs."""

from grubench.models.sequence import OneHot, SequenceModel

__all__ = ["OneHot", "SequenceModel"]

"""Placeholder: the nim service router (being written)."""

from fastapi import APIRouter

router = APIRouter()

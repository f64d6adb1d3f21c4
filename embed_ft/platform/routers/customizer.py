"""Placeholder: the customizer service router (being written)."""

from fastapi import APIRouter

router = APIRouter()

"""Placeholder: the entities service router (being written)."""

from fastapi import APIRouter

router = APIRouter()

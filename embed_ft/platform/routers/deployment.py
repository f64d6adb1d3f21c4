"""Placeholder: the deployment service router (being written)."""

from fastapi import APIRouter

router = APIRouter()

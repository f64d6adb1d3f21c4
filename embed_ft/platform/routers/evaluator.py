"""Placeholder: the evaluator service router (being written)."""

from fastapi import APIRouter

router = APIRouter()

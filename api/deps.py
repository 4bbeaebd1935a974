"""Dependencies of the routes, as ``Annotated`` aliases (everything lives on ``app.state``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.admission import Admission
from api.config import ApiSettings
from api.gateway import Gateway
from api.job_reader import JobReader


def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def get_job_reader(request: Request) -> JobReader:
    return get_gateway(request).reader


def get_admission(request: Request) -> Admission:
    return get_gateway(request).admission


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
GatewayDep = Annotated[Gateway, Depends(get_gateway)]
JobReaderDep = Annotated[JobReader, Depends(get_job_reader)]
AdmissionDep = Annotated[Admission, Depends(get_admission)]

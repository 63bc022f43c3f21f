# syntax=docker/dockerfile:1
# llama.cpp for buildtool's cpu family. The build context is what `buildtool build --artifact
# image --emit DIR` (or `buildtool bake`) writes: recipes/cmake, the pinned llama.cpp tree and
# targets/<target>/defines.cmake — the target's resolved CMake definitions, the same ones its
# tarball and wheel are built with — which CMake loads as its initial cache (-C).
ARG BUILD_IMAGE=ubuntu:24.04
ARG RUNTIME_IMAGE=ubuntu:24.04

FROM ${BUILD_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# arm64: ggml's armv9.2 CPU variants need a compiler that knows -march=...+sme (GCC 14;
# Ubuntu 24.04 has it), as llama.cpp's own arm64 release build does
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ cmake ninja-build ccache \
 && if [ "$(uname -m)" = aarch64 ]; then \
      apt-get install -y --no-install-recommends gcc-14 g++-14 \
      && ln -sf /usr/bin/gcc-14 /usr/local/bin/cc && ln -sf /usr/bin/g++-14 /usr/local/bin/c++; \
    fi \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
ARG BUILDTOOL_TARGET=cpu
COPY CMakeLists.txt ship.cmake /src/
COPY llama.cpp /src/llama.cpp
COPY targets/${BUILDTOOL_TARGET}/defines.cmake /src/defines.cmake
ENV CCACHE_DIR=/root/.cache/ccache
RUN --mount=type=cache,id=buildtool-ccache-cpu,target=/root/.cache/ccache \
    cmake -S /src -B /build -G Ninja -C /src/defines.cmake -DBUILDTOOL_DESTINATION=bin \
      -DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
 && cmake --build /build --target buildtool_programs \
 && cmake --install /build --component buildtool --prefix /out

FROM ${RUNTIME_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --create-home --home-dir /home/llama \
      --shell /usr/sbin/nologin llama
COPY --from=build /out/bin/ /opt/llama.cpp/
ARG BUILDTOOL_TARGET=cpu
COPY targets/${BUILDTOOL_TARGET}/manifest.json /opt/llama.cpp/manifest.json
ENV PATH=/opt/llama.cpp:$PATH LLAMA_ARG_HOST=0.0.0.0 LLAMA_ARG_PORT=8080
USER 10001
WORKDIR /home/llama
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ' 200 ' <&3"]
ENTRYPOINT ["/opt/llama.cpp/llama-server"]
# Labels last: they change with every build (created) and must not invalidate the layers.
ARG LLAMA_CPP_VERSION=unknown
ARG LLAMA_CPP_COMMIT=unknown
ARG BUILD_KEY=unknown
ARG CREATED=unknown
ARG RUNTIME_IMAGE
LABEL org.opencontainers.image.title="llama.cpp (${BUILDTOOL_TARGET})" \
      org.opencontainers.image.description="llama.cpp server and tools, built by buildtool for ${BUILDTOOL_TARGET}" \
      org.opencontainers.image.version="${LLAMA_CPP_VERSION}" \
      org.opencontainers.image.revision="${LLAMA_CPP_COMMIT}" \
      org.opencontainers.image.source="https://github.com/ggml-org/llama.cpp" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${RUNTIME_IMAGE}" \
      dev.buildtool.target="${BUILDTOOL_TARGET}" \
      dev.buildtool.build-key="${BUILD_KEY}" \
      dev.buildtool.manifest="/opt/llama.cpp/manifest.json"

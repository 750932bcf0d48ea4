"""Host-side builders of the guest appliance and the lab images: kernel, modules, shared
libraries, cpio and Xen packages. Public API: ``image.build``, ``image.cache_root``,
``kernel.find_kernel``, ``apt.run``, ..."""

/*
 * VK_LAYER_MIMETIC_gpu_select: a Vulkan instance layer that hides every physical device but one,
 * chosen by index. Dawn (the `webgpu` npm package) can pick an adapter only by name, and the GPUs
 * of one host have identical names; like llama.cpp's GGML_VK_VISIBLE_DEVICES, this selects by
 * enumeration index, below Dawn, so Dawn sees one adapter.
 *
 *   MIMETIC_VK_GPU=<i>          keep GPU i. GPUs are the physical devices that are not CPU
 *                               implementations (lavapipe, SwiftShader), in the driver's order;
 *                               when every device is a CPU one, all of them count. An index past
 *                               the end leaves zero devices (Dawn then finds no adapter).
 *   MIMETIC_VK_GPU_LIST=<path>  write every device seen (JSON, see write_list) to <path>, so the
 *                               caller can say how many GPUs there are and which one it got.
 *
 * Enabled with VK_INSTANCE_LAYERS=VK_LAYER_MIMETIC_gpu_select and VK_ADD_LAYER_PATH=<folder of
 * the manifest>; src/model/gpu-select.ts sets those. Self-contained: the few Vulkan types it
 * needs are declared below (stable ABI from vulkan_core.h / vk_layer.h), so no SDK is needed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#define VKAPI_ATTR
#define VKAPI_CALL
#define EXPORT __attribute__((visibility("default")))

typedef int32_t VkResult;
typedef uint32_t VkBool32;
typedef uint32_t VkFlags;
typedef int32_t VkStructureType;
typedef struct VkInstance_T *VkInstance;
typedef struct VkPhysicalDevice_T *VkPhysicalDevice;
typedef struct VkDevice_T *VkDevice;
typedef void (*PFN_vkVoidFunction)(void);
typedef PFN_vkVoidFunction (*PFN_vkGetInstanceProcAddr)(VkInstance, const char *);
typedef PFN_vkVoidFunction (*PFN_vkGetDeviceProcAddr)(VkDevice, const char *);
typedef PFN_vkVoidFunction (*PFN_GetPhysicalDeviceProcAddr)(VkInstance, const char *);

#define VK_SUCCESS 0
#define VK_INCOMPLETE 5
#define VK_ERROR_OUT_OF_HOST_MEMORY (-1)
#define VK_ERROR_INITIALIZATION_FAILED (-3)
#define VK_STRUCTURE_TYPE_LOADER_INSTANCE_CREATE_INFO 47
#define VK_STRUCTURE_TYPE_LOADER_DEVICE_CREATE_INFO 48
#define VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2 1000059001
#define VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_ID_PROPERTIES 1000071004
#define VK_PHYSICAL_DEVICE_TYPE_CPU 4
#define VK_MAX_PHYSICAL_DEVICE_NAME_SIZE 256
#define VK_UUID_SIZE 16
#define VK_LUID_SIZE 8
#define VK_MAX_DEVICE_GROUP_SIZE 32
#define VK_API_VERSION_1_1 ((1u << 22) | (1u << 12))

typedef struct {
  VkStructureType sType;
  const void *pNext;
  const char *pApplicationName;
  uint32_t applicationVersion;
  const char *pEngineName;
  uint32_t engineVersion;
  uint32_t apiVersion;
} VkApplicationInfo;

typedef struct {
  VkStructureType sType;
  const void *pNext;
  VkFlags flags;
  const VkApplicationInfo *pApplicationInfo;
  uint32_t enabledLayerCount;
  const char *const *ppEnabledLayerNames;
  uint32_t enabledExtensionCount;
  const char *const *ppEnabledExtensionNames;
} VkInstanceCreateInfo;

typedef struct VkBaseInStructure {
  VkStructureType sType;
  const struct VkBaseInStructure *pNext;
} VkBaseInStructure;

/* vk_layer.h */
typedef enum { VK_LAYER_LINK_INFO = 0 } VkLayerFunction;
typedef struct VkLayerInstanceLink_ {
  struct VkLayerInstanceLink_ *pNext;
  PFN_vkGetInstanceProcAddr pfnNextGetInstanceProcAddr;
  PFN_GetPhysicalDeviceProcAddr pfnNextGetPhysicalDeviceProcAddr;
} VkLayerInstanceLink;
typedef struct {
  VkStructureType sType;
  const void *pNext;
  VkLayerFunction function;
  union {
    VkLayerInstanceLink *pLayerInfo;
    void *pfnSetInstanceLoaderData;
  } u;
} VkLayerInstanceCreateInfo;
typedef struct VkLayerDeviceLink_ {
  struct VkLayerDeviceLink_ *pNext;
  PFN_vkGetInstanceProcAddr pfnNextGetInstanceProcAddr;
  PFN_vkGetDeviceProcAddr pfnNextGetDeviceProcAddr;
} VkLayerDeviceLink;
typedef struct {
  VkStructureType sType;
  const void *pNext;
  VkLayerFunction function;
  union {
    VkLayerDeviceLink *pLayerInfo;
    void *pfnSetDeviceLoaderData;
  } u;
} VkLayerDeviceCreateInfo;

typedef enum { LAYER_NEGOTIATE_UNINTIALIZED = 0, LAYER_NEGOTIATE_INTERFACE_STRUCT = 1 } VkNegotiateLayerStructType;
typedef struct {
  VkNegotiateLayerStructType sType;
  void *pNext;
  uint32_t loaderLayerInterfaceVersion;
  PFN_vkGetInstanceProcAddr pfnGetInstanceProcAddr;
  PFN_vkGetDeviceProcAddr pfnGetDeviceProcAddr;
  PFN_GetPhysicalDeviceProcAddr pfnGetPhysicalDeviceProcAddr;
} VkNegotiateLayerInterface;

/* Only the head of VkPhysicalDeviceProperties is read; the buffer is sized for the whole struct. */
typedef struct {
  uint32_t apiVersion;
  uint32_t driverVersion;
  uint32_t vendorID;
  uint32_t deviceID;
  int32_t deviceType;
  char deviceName[VK_MAX_PHYSICAL_DEVICE_NAME_SIZE];
  uint8_t pipelineCacheUUID[VK_UUID_SIZE];
} PropsHead;
typedef union {
  PropsHead head;
  uint8_t bytes[1024]; /* sizeof(VkPhysicalDeviceProperties) is 824 on x86-64 */
} Props;
typedef struct {
  VkStructureType sType;
  void *pNext;
  Props properties;
} Props2;
typedef struct {
  VkStructureType sType;
  void *pNext;
  uint8_t deviceUUID[VK_UUID_SIZE];
  uint8_t driverUUID[VK_UUID_SIZE];
  uint8_t deviceLUID[VK_LUID_SIZE];
  uint32_t deviceNodeMask;
  VkBool32 deviceLUIDValid;
} IdProps;
typedef struct {
  VkStructureType sType;
  void *pNext;
  uint32_t physicalDeviceCount;
  VkPhysicalDevice physicalDevices[VK_MAX_DEVICE_GROUP_SIZE];
  VkBool32 subsetAllocation;
} VkPhysicalDeviceGroupProperties;

typedef VkResult (*PFN_vkCreateInstance)(const VkInstanceCreateInfo *, const void *, VkInstance *);
typedef void (*PFN_vkDestroyInstance)(VkInstance, const void *);
typedef VkResult (*PFN_vkEnumeratePhysicalDevices)(VkInstance, uint32_t *, VkPhysicalDevice *);
typedef VkResult (*PFN_vkEnumeratePhysicalDeviceGroups)(VkInstance, uint32_t *, VkPhysicalDeviceGroupProperties *);
typedef void (*PFN_vkGetPhysicalDeviceProperties)(VkPhysicalDevice, Props *);
typedef void (*PFN_vkGetPhysicalDeviceProperties2)(VkPhysicalDevice, Props2 *);
typedef VkResult (*PFN_vkCreateDevice)(VkPhysicalDevice, const void *, const void *, VkDevice *);
typedef void (*PFN_vkDestroyDevice)(VkDevice, const void *);

/* Dispatchable handles start with the loader's dispatch pointer: the key for per-object state. */
static void *key(const void *handle) { return *(void *const *)handle; }

typedef struct {
  void *key;
  PFN_vkGetInstanceProcAddr gipa;
  PFN_vkDestroyInstance destroy;
  PFN_vkEnumeratePhysicalDevices enumerate;
  PFN_vkEnumeratePhysicalDeviceGroups enumerate_groups;
  PFN_vkGetPhysicalDeviceProperties props;
  PFN_vkGetPhysicalDeviceProperties2 props2; /* NULL below Vulkan 1.1 */
} Instance;
typedef struct {
  void *key;
  PFN_vkGetDeviceProcAddr gdpa;
  PFN_vkDestroyDevice destroy;
} Device;

#define MAX_OBJECTS 64
static Instance instances[MAX_OBJECTS];
static Device devices[MAX_OBJECTS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* Per-object tables (instances, devices): find, store in a free slot, forget; all under `lock`. */
#define TABLE_FIND(table, k, found)                                                      \
  do {                                                                                   \
    pthread_mutex_lock(&lock);                                                           \
    for (int i_ = 0; i_ < MAX_OBJECTS && !(found); i_++) if ((table)[i_].key == (k)) (found) = &(table)[i_]; \
    pthread_mutex_unlock(&lock);                                                         \
  } while (0)
#define TABLE_STORE(table, obj, ok)                                                      \
  do {                                                                                   \
    pthread_mutex_lock(&lock);                                                           \
    for (int i_ = 0; i_ < MAX_OBJECTS && !(ok); i_++) if (!(table)[i_].key) { (table)[i_] = (obj); (ok) = 1; } \
    pthread_mutex_unlock(&lock);                                                         \
  } while (0)
#define TABLE_FORGET(entry)                                                              \
  do {                                                                                   \
    pthread_mutex_lock(&lock);                                                           \
    memset((entry), 0, sizeof *(entry));                                                 \
    pthread_mutex_unlock(&lock);                                                         \
  } while (0)

static Instance *find_instance(void *k) {
  Instance *found = NULL;
  TABLE_FIND(instances, k, found);
  return found;
}
static Device *find_device(void *k) {
  Device *found = NULL;
  TABLE_FIND(devices, k, found);
  return found;
}

/* The requested GPU index, or -1 when MIMETIC_VK_GPU is unset or not a number (keep all). */
static long requested(void) {
  const char *v = getenv("MIMETIC_VK_GPU");
  if (!v || !*v) return -1;
  char *end;
  long n = strtol(v, &end, 10);
  return (*end || n < 0) ? -1 : n;
}

static void json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c < 0x20) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

static const char *type_name(int32_t t) {
  static const char *names[] = {"other", "integrated", "discrete", "virtual", "cpu"};
  return t >= 0 && t <= 4 ? names[t] : "other";
}

/*
 * {"requested": i|null, "devices": [{"gpu": j|null, "name", "type", "vendorID", "deviceID",
 * "uuid": hex|null, "kept": bool}, ...]}. Written to <path>.tmp then renamed over <path>.
 */
static void write_list(Instance *inst, VkPhysicalDevice *all, uint32_t n, const long *gpu_of, long req) {
  const char *path = getenv("MIMETIC_VK_GPU_LIST");
  if (!path || !*path) return;
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) return;
  FILE *f = fopen(tmp, "w");
  if (!f) return;
  fprintf(f, "{\"requested\":");
  if (req < 0) fprintf(f, "null"); else fprintf(f, "%ld", req);
  fprintf(f, ",\"devices\":[");
  for (uint32_t i = 0; i < n; i++) {
    Props p;
    memset(&p, 0, sizeof p);
    uint8_t uuid[VK_UUID_SIZE];
    int have_uuid = 0;
    if (inst->props2) {
      IdProps id;
      memset(&id, 0, sizeof id);
      id.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_ID_PROPERTIES;
      Props2 p2;
      memset(&p2, 0, sizeof p2);
      p2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2;
      p2.pNext = &id;
      inst->props2(all[i], &p2);
      p = p2.properties;
      memcpy(uuid, id.deviceUUID, VK_UUID_SIZE);
      have_uuid = 1;
    } else {
      inst->props(all[i], &p);
    }
    p.head.deviceName[VK_MAX_PHYSICAL_DEVICE_NAME_SIZE - 1] = 0;
    fprintf(f, "%s{\"gpu\":", i ? "," : "");
    if (gpu_of[i] < 0) fprintf(f, "null"); else fprintf(f, "%ld", gpu_of[i]);
    fprintf(f, ",\"name\":");
    json_string(f, p.head.deviceName);
    fprintf(f, ",\"type\":\"%s\",\"vendorID\":%u,\"deviceID\":%u,\"uuid\":", type_name(p.head.deviceType), p.head.vendorID, p.head.deviceID);
    if (have_uuid) {
      fputc('"', f);
      for (int b = 0; b < VK_UUID_SIZE; b++) fprintf(f, "%02x", uuid[b]);
      fputc('"', f);
    } else {
      fprintf(f, "null");
    }
    fprintf(f, ",\"kept\":%s}", (req < 0 || gpu_of[i] == req) ? "true" : "false");
  }
  fprintf(f, "]}\n");
  if (fclose(f) == 0) rename(tmp, path);
  else remove(tmp);
}

/*
 * The devices this layer lets through, in order: all of them without MIMETIC_VK_GPU, else the one
 * whose GPU index is the requested one (or none). Returns a malloc'd array (*out_n entries).
 */
static VkResult kept_devices(Instance *inst, VkInstance instance, VkPhysicalDevice **out, uint32_t *out_n) {
  uint32_t n = 0;
  VkResult r = inst->enumerate(instance, &n, NULL);
  if (r != VK_SUCCESS && r != VK_INCOMPLETE) return r;
  VkPhysicalDevice *all = calloc(n ? n : 1, sizeof *all);
  long *gpu_of = calloc(n ? n : 1, sizeof *gpu_of);
  if (!all || !gpu_of) { free(all); free(gpu_of); return VK_ERROR_OUT_OF_HOST_MEMORY; }
  r = inst->enumerate(instance, &n, all);
  if (r != VK_SUCCESS && r != VK_INCOMPLETE) { free(all); free(gpu_of); return r; }
  /* GPU indices: non-CPU devices only, unless there are no others. */
  int any_hw = 0;
  int32_t *type = calloc(n ? n : 1, sizeof *type);
  if (!type) { free(all); free(gpu_of); return VK_ERROR_OUT_OF_HOST_MEMORY; }
  for (uint32_t i = 0; i < n; i++) {
    Props p;
    memset(&p, 0, sizeof p);
    inst->props(all[i], &p);
    type[i] = p.head.deviceType;
    if (type[i] != VK_PHYSICAL_DEVICE_TYPE_CPU) any_hw = 1;
  }
  long next = 0;
  for (uint32_t i = 0; i < n; i++) gpu_of[i] = (!any_hw || type[i] != VK_PHYSICAL_DEVICE_TYPE_CPU) ? next++ : -1;
  free(type);
  long req = requested();
  write_list(inst, all, n, gpu_of, req);
  uint32_t k = 0;
  for (uint32_t i = 0; i < n; i++) if (req < 0 || gpu_of[i] == req) all[k++] = all[i];
  free(gpu_of);
  *out = all;
  *out_n = k;
  return VK_SUCCESS;
}

static VKAPI_ATTR VkResult VKAPI_CALL EnumeratePhysicalDevices(VkInstance instance, uint32_t *count, VkPhysicalDevice *out) {
  Instance *inst = find_instance(key(instance));
  if (!inst) return VK_ERROR_INITIALIZATION_FAILED;
  VkPhysicalDevice *kept;
  uint32_t n;
  VkResult r = kept_devices(inst, instance, &kept, &n);
  if (r != VK_SUCCESS) return r;
  if (!out) {
    *count = n;
  } else {
    uint32_t m = *count < n ? *count : n;
    memcpy(out, kept, m * sizeof *out);
    r = m < n ? VK_INCOMPLETE : VK_SUCCESS;
    *count = m;
  }
  free(kept);
  return r;
}

/* One group per kept device, alone in it (a group spanning a hidden device would expose it). */
static VKAPI_ATTR VkResult VKAPI_CALL EnumeratePhysicalDeviceGroups(VkInstance instance, uint32_t *count, VkPhysicalDeviceGroupProperties *out) {
  Instance *inst = find_instance(key(instance));
  if (!inst) return VK_ERROR_INITIALIZATION_FAILED;
  VkPhysicalDevice *kept;
  uint32_t n;
  VkResult r = kept_devices(inst, instance, &kept, &n);
  if (r != VK_SUCCESS) return r;
  if (!out) {
    *count = n;
  } else {
    uint32_t m = *count < n ? *count : n;
    for (uint32_t i = 0; i < m; i++) {
      out[i].physicalDeviceCount = 1;
      memset(out[i].physicalDevices, 0, sizeof out[i].physicalDevices);
      out[i].physicalDevices[0] = kept[i];
      out[i].subsetAllocation = 0;
    }
    r = m < n ? VK_INCOMPLETE : VK_SUCCESS;
    *count = m;
  }
  free(kept);
  return r;
}

static VKAPI_ATTR VkResult VKAPI_CALL CreateInstance(const VkInstanceCreateInfo *info, const void *alloc, VkInstance *instance) {
  VkLayerInstanceCreateInfo *chain = (VkLayerInstanceCreateInfo *)info->pNext;
  while (chain && !(chain->sType == VK_STRUCTURE_TYPE_LOADER_INSTANCE_CREATE_INFO && chain->function == VK_LAYER_LINK_INFO))
    chain = (VkLayerInstanceCreateInfo *)chain->pNext;
  if (!chain) return VK_ERROR_INITIALIZATION_FAILED;
  PFN_vkGetInstanceProcAddr gipa = chain->u.pLayerInfo->pfnNextGetInstanceProcAddr;
  chain->u.pLayerInfo = chain->u.pLayerInfo->pNext;
  PFN_vkCreateInstance create = (PFN_vkCreateInstance)gipa(NULL, "vkCreateInstance");
  VkResult r = create(info, alloc, instance);
  if (r != VK_SUCCESS) return r;
  Instance inst = {
    .key = key(*instance),
    .gipa = gipa,
    .destroy = (PFN_vkDestroyInstance)gipa(*instance, "vkDestroyInstance"),
    .enumerate = (PFN_vkEnumeratePhysicalDevices)gipa(*instance, "vkEnumeratePhysicalDevices"),
    .enumerate_groups = (PFN_vkEnumeratePhysicalDeviceGroups)gipa(*instance, "vkEnumeratePhysicalDeviceGroups"),
    .props = (PFN_vkGetPhysicalDeviceProperties)gipa(*instance, "vkGetPhysicalDeviceProperties"),
    .props2 = NULL,
  };
  uint32_t api = info->pApplicationInfo ? info->pApplicationInfo->apiVersion : 0;
  if (api >= VK_API_VERSION_1_1) inst.props2 = (PFN_vkGetPhysicalDeviceProperties2)gipa(*instance, "vkGetPhysicalDeviceProperties2");
  int stored = 0;
  TABLE_STORE(instances, inst, stored);
  if (!stored) {
    inst.destroy(*instance, alloc);
    return VK_ERROR_OUT_OF_HOST_MEMORY;
  }
  return VK_SUCCESS;
}

static VKAPI_ATTR void VKAPI_CALL DestroyInstance(VkInstance instance, const void *alloc) {
  if (!instance) return;
  Instance *inst = find_instance(key(instance));
  if (!inst) return;
  PFN_vkDestroyInstance destroy = inst->destroy;
  TABLE_FORGET(inst);
  destroy(instance, alloc);
}

/* Devices pass straight through; the layer only needs to be in the device chain to be legal. */
static VKAPI_ATTR VkResult VKAPI_CALL CreateDevice(VkPhysicalDevice pd, const void *info_v, const void *alloc, VkDevice *device) {
  const VkBaseInStructure *info = info_v;
  VkLayerDeviceCreateInfo *chain = (VkLayerDeviceCreateInfo *)info->pNext;
  while (chain && !(chain->sType == VK_STRUCTURE_TYPE_LOADER_DEVICE_CREATE_INFO && chain->function == VK_LAYER_LINK_INFO))
    chain = (VkLayerDeviceCreateInfo *)chain->pNext;
  if (!chain) return VK_ERROR_INITIALIZATION_FAILED;
  PFN_vkGetInstanceProcAddr gipa = chain->u.pLayerInfo->pfnNextGetInstanceProcAddr;
  PFN_vkGetDeviceProcAddr gdpa = chain->u.pLayerInfo->pfnNextGetDeviceProcAddr;
  chain->u.pLayerInfo = chain->u.pLayerInfo->pNext;
  PFN_vkCreateDevice create = (PFN_vkCreateDevice)gipa(NULL, "vkCreateDevice");
  VkResult r = create(pd, info_v, alloc, device);
  if (r != VK_SUCCESS) return r;
  Device dev = {.key = key(*device), .gdpa = gdpa, .destroy = (PFN_vkDestroyDevice)gdpa(*device, "vkDestroyDevice")};
  int stored = 0;
  TABLE_STORE(devices, dev, stored);
  if (!stored) {
    dev.destroy(*device, alloc);
    return VK_ERROR_OUT_OF_HOST_MEMORY;
  }
  return VK_SUCCESS;
}

static VKAPI_ATTR void VKAPI_CALL DestroyDevice(VkDevice device, const void *alloc) {
  if (!device) return;
  Device *dev = find_device(key(device));
  if (!dev) return;
  PFN_vkDestroyDevice destroy = dev->destroy;
  TABLE_FORGET(dev);
  destroy(device, alloc);
}

EXPORT VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL mimetic_GetDeviceProcAddr(VkDevice device, const char *name) {
  if (!strcmp(name, "vkGetDeviceProcAddr")) return (PFN_vkVoidFunction)mimetic_GetDeviceProcAddr;
  if (!strcmp(name, "vkDestroyDevice")) return (PFN_vkVoidFunction)DestroyDevice;
  Device *dev = find_device(key(device));
  return dev ? dev->gdpa(device, name) : NULL;
}

EXPORT VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL mimetic_GetInstanceProcAddr(VkInstance instance, const char *name) {
  if (!strcmp(name, "vkGetInstanceProcAddr")) return (PFN_vkVoidFunction)mimetic_GetInstanceProcAddr;
  if (!strcmp(name, "vkCreateInstance")) return (PFN_vkVoidFunction)CreateInstance;
  if (!strcmp(name, "vkDestroyInstance")) return (PFN_vkVoidFunction)DestroyInstance;
  if (!strcmp(name, "vkEnumeratePhysicalDevices")) return (PFN_vkVoidFunction)EnumeratePhysicalDevices;
  if (!strcmp(name, "vkEnumeratePhysicalDeviceGroups") || !strcmp(name, "vkEnumeratePhysicalDeviceGroupsKHR"))
    return (PFN_vkVoidFunction)EnumeratePhysicalDeviceGroups;
  if (!strcmp(name, "vkCreateDevice")) return (PFN_vkVoidFunction)CreateDevice;
  if (!strcmp(name, "vkGetDeviceProcAddr")) return (PFN_vkVoidFunction)mimetic_GetDeviceProcAddr;
  if (!strcmp(name, "vkDestroyDevice")) return (PFN_vkVoidFunction)DestroyDevice;
  if (!instance) return NULL;
  Instance *inst = find_instance(key(instance));
  return inst ? inst->gipa(instance, name) : NULL;
}

EXPORT VKAPI_ATTR VkResult VKAPI_CALL vkNegotiateLoaderLayerInterfaceVersion(VkNegotiateLayerInterface *v) {
  if (!v || v->sType != LAYER_NEGOTIATE_INTERFACE_STRUCT) return VK_ERROR_INITIALIZATION_FAILED;
  if (v->loaderLayerInterfaceVersion > 2) v->loaderLayerInterfaceVersion = 2;
  v->pfnGetInstanceProcAddr = mimetic_GetInstanceProcAddr;
  v->pfnGetDeviceProcAddr = mimetic_GetDeviceProcAddr;
  v->pfnGetPhysicalDeviceProcAddr = NULL;
  return VK_SUCCESS;
}

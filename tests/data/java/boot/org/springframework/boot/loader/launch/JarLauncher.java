package org.springframework.boot.loader.launch;

import java.io.File;
import java.io.InputStream;
import java.lang.reflect.Method;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.jar.Manifest;
import java.util.stream.Stream;

/**
 * A stand-in for Spring Boot's launcher (Boot 3.2's name): from the exploded layout it was
 * loaded from, it puts BOOT-INF/classes and BOOT-INF/lib/*.jar on a class loader and calls
 * the manifest's Start-Class.
 */
public class JarLauncher {
    public static void main(String[] args) throws Exception {
        Path root = Path.of(JarLauncher.class.getProtectionDomain().getCodeSource().getLocation().toURI());
        List<URL> urls = new ArrayList<>();
        urls.add(root.resolve("BOOT-INF/classes/").toUri().toURL());
        try (Stream<Path> libs = Files.list(root.resolve("BOOT-INF/lib"))) {
            for (Path lib : libs.sorted().toList()) {
                urls.add(lib.toUri().toURL());
            }
        }
        String start;
        try (InputStream in = Files.newInputStream(root.resolve("META-INF/MANIFEST.MF"))) {
            start = new Manifest(in).getMainAttributes().getValue("Start-Class");
        }
        ClassLoader loader = new URLClassLoader(urls.toArray(new URL[0]), JarLauncher.class.getClassLoader());
        Thread.currentThread().setContextClassLoader(loader);
        Method main = loader.loadClass(start).getMethod("main", String[].class);
        main.invoke(null, (Object) args);
    }
}

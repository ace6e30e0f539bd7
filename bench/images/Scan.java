// The "hostile" image's app: a JVM start that reads most of the image, like a big app server that
// touches hundreds of modules and scans its whole classpath before it serves.
//   1. walks jrt:/modules and reads every resource of every JDK module (about all of lib/modules);
//   2. opens every jar in /usr/share/java and inflates every entry (a classpath scan);
//   3. with a port argument: serves HTTP 200 on 127.0.0.1:<port>; without: exits 0.
// Compiled at image build time with the image's own JDK (bench/images/recipes.ts).
import com.sun.net.httpserver.HttpServer;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.file.FileSystem;
import java.nio.file.FileSystems;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Enumeration;
import java.util.List;
import java.util.stream.Stream;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;

public class Scan {
  public static void main(String[] args) throws Exception {
    long t0 = System.nanoTime();
    long modFiles = 0, modBytes = 0;
    FileSystem jrt = FileSystems.getFileSystem(URI.create("jrt:/"));
    try (Stream<Path> s = Files.walk(jrt.getPath("/modules"))) {
      for (Path p : (Iterable<Path>) s::iterator) {
        if (!Files.isRegularFile(p)) continue;
        modBytes += Files.readAllBytes(p).length;
        modFiles++;
      }
    }
    long jars = 0, entries = 0, jarBytes = 0;
    List<Path> jarPaths = new ArrayList<>();
    Path lib = Path.of("/usr/share/java");
    if (Files.isDirectory(lib)) {
      try (Stream<Path> s = Files.walk(lib)) {
        s.filter(p -> p.toString().endsWith(".jar") && Files.isRegularFile(p, LinkOption.NOFOLLOW_LINKS)).sorted().forEach(jarPaths::add);
      }
    }
    byte[] buf = new byte[1 << 16];
    for (Path j : jarPaths) {
      try (ZipFile z = new ZipFile(j.toFile())) {
        jars++;
        for (Enumeration<? extends ZipEntry> e = z.entries(); e.hasMoreElements(); ) {
          ZipEntry ze = e.nextElement();
          if (ze.isDirectory()) continue;
          try (InputStream in = z.getInputStream(ze)) {
            for (int n; (n = in.read(buf)) > 0; ) jarBytes += n;
          }
          entries++;
        }
      }
    }
    System.out.printf("read %d module resources (%d bytes) and %d entries of %d jars (%d bytes) in %d ms%n",
        modFiles, modBytes, entries, jars, jarBytes, (System.nanoTime() - t0) / 1_000_000);
    if (args.length == 0) return;
    HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", Integer.parseInt(args[0])), 16);
    server.createContext("/", ex -> {
      byte[] body = "ok\n".getBytes();
      ex.sendResponseHeaders(200, body.length);
      try (OutputStream o = ex.getResponseBody()) { o.write(body); }
    });
    server.start();
    System.out.println("Server ready");
  }
}
